"""tools/check_layers.py: the real tree passes, and each kind of violation
is caught (an upward include, a local extern that reaches up, a circle of
C files, a circle of Python imports)."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, "tools", "check_layers.py")


def run_check(root, *flags):
    return subprocess.run([sys.executable, CHECK, "--root", str(root), *flags],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def tree(tmp_path):
    for part in ("src/core", "src/interpool"):
        shutil.copytree(os.path.join(ROOT, part), tmp_path / part,
                        ignore=shutil.ignore_patterns("*.so", "*.flags", "__pycache__"))
    return tmp_path


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


def test_the_tree_keeps_its_layers():
    result = run_check(ROOT, "--symbols")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_upward_include_fails(tree):
    append(tree / "src/core/base/clock.c", '\n#include "runtime/pool.h"\n')
    result = run_check(tree)
    assert result.returncode == 1
    assert "base/clock.c: includes \"runtime/pool.h\" from the higher layer 'runtime'" in result.stdout


def test_local_extern_reaching_up_fails(tree):
    # No include at all: only the symbol check can see it.
    append(tree / "src/core/mem/buf.c",
           "\nvoid ip_wake_all_pools(void);\n"
           "void ip_buf_poke(void) { ip_wake_all_pools(); }\n")
    assert run_check(tree).returncode == 0
    result = run_check(tree, "--symbols")
    assert result.returncode == 1
    assert "mem/buf.c: uses ip_wake_all_pools from the higher layer file runtime/pool.c" in result.stdout


def test_circle_of_c_files_fails(tree):
    # Same layer, so no upward include: the circle itself is the fault.
    append(tree / "src/core/runtime/completions.h", '\n#include "runtime/task.h"\n')
    result = run_check(tree)
    assert result.returncode == 1
    assert "circle: runtime/completions <-> runtime/task" in result.stdout


def test_circle_of_python_modules_fails(tree):
    append(tree / "src/interpool/_errors.py", "\n\ndef _late():\n    from . import _pool\n")
    result = run_check(tree)
    assert result.returncode == 1
    assert "Python modules import each other in a circle" in result.stdout
    assert "_errors" in result.stdout and "_pool" in result.stdout
