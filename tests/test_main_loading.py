"""Workers find the caller's __main__ the way Python found it: ``python -m
pkg.mod`` by its spec name (relative imports work), a script whatever its
file name; a __main__ with no file (stdin, ``-c``) gets a clear error at the
call; a script that imports a module which cannot load in a subinterpreter
gets an error naming that module and the two fixes.

Each case runs a small program in a subprocess (its own __main__)."""

import os
import textwrap

import pytest

from helpers_util import run_python

POOL_SCRIPT = """\
import interpool
{imports}
K = 2

def reads_global(x):
    return x * K

def pure(x):
    return x * 3

if __name__ == "__main__":
    {guarded}
    with interpool.Pool(1) as pool:
        for fn, arg in ((pure, 2), (reads_global, 5)):
            try:
                print(fn.__name__, pool.submit(fn, arg).result(60))
            except Exception as exc:
                print(type(exc).__name__, "|", " ".join(str(exc).split()))
"""


def script(imports="", guarded="pass"):
    return POOL_SCRIPT.format(imports=imports, guarded=guarded)


def check(proc):
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout


def test_python_m_package_module_with_relative_imports(tmp_path):
    pkg = tmp_path / "app"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("def twice(x):\n    return 2 * x\n")
    (pkg / "cli.py").write_text(textwrap.dedent("""\
        import dataclasses
        from .helper import twice

        @dataclasses.dataclass
        class Box:
            value: int

        def task(x):
            return Box(twice(x))

        if __name__ == "__main__":
            import interpool
            with interpool.Pool(1) as pool:
                box = pool.submit(task, 3).result(60)
                print(type(box) is Box, box.value, __spec__.name)
        """))
    out = check(run_python(["-m", "app.cli"], cwd=tmp_path))
    assert out.split() == ["True", "6", "app.cli"]


def test_script_without_py_suffix(tmp_path):
    path = tmp_path / "myscript"
    path.write_text("#!/usr/bin/env python3\n" + script())
    os.chmod(path, 0o755)
    out = check(run_python([str(path)], cwd=tmp_path))
    assert "pure 6" in out and "reads_global 10" in out


@pytest.mark.parametrize("how", ["stdin", "-c"])
def test_main_without_a_file_fails_at_the_call(tmp_path, how):
    import subprocess
    import sys

    from helpers_util import subprocess_env

    text = script()
    args = ["-"] if how == "stdin" else ["-c", text]
    proc = subprocess.run([sys.executable, *args], input=text if how == "stdin" else None,
                          cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                          timeout=60)
    out = check(proc)
    # A function that reads no globals travels by value: it runs.
    assert "pure 6" in out
    # One that reads a global of this __main__ cannot: a TypeError at the call.
    line = next(line for line in out.splitlines() if line.startswith("TypeError |"))
    where = "standard input" if how == "stdin" else "`python -c`"
    assert where in line and "'reads_global'" in line and "K" in line


def test_script_importing_a_module_workers_cannot_load(tmp_path):
    path = tmp_path / "uses_ext.py"
    path.write_text(script(imports="import helpers_no_subinterp"))
    out = check(run_python([str(path)], cwd=tmp_path))
    line = next(line for line in out.splitlines() if line.startswith("SubinterpreterImportError"))
    assert "reads_global()" in line or "pure()" in line           # the function
    assert "your script imports helpers_no_subinterp" in line
    assert "(helpers_no_subinterp does not support loading in subinterpreters)" in line
    assert 'Fix: pass fallback="processes"' in line
    assert "keep the helpers_no_subinterp import out of the script's top level" in line


def test_script_importing_it_under_the_main_guard_works(tmp_path):
    path = tmp_path / "guarded.py"
    path.write_text(script(guarded="import helpers_no_subinterp"))
    out = check(run_python([str(path)], cwd=tmp_path))
    assert "pure 6" in out and "reads_global 10" in out


def test_numpy_like_bad_install_message_is_explained(tmp_path):
    path = tmp_path / "uses_fake_numpy.py"
    path.write_text(script(imports="import helpers_fake_numpy"))
    out = check(run_python([str(path)], cwd=tmp_path))
    line = next(line for line in out.splitlines() if line.startswith("SubinterpreterImportError"))
    assert "helpers_fake_numpy._core_ext" in line        # the module that cannot load
    assert "your script imports helpers_fake_numpy" in line
    assert "bad install" not in line
    assert "fallback=" in line and "out of the script's top level" in line


def test_module_importing_a_module_workers_cannot_load(tmp_path):
    (tmp_path / "tasks_mod.py").write_text("import helpers_no_subinterp\n\ndef task(x):\n    return x\n")
    (tmp_path / "main.py").write_text(textwrap.dedent("""\
        import interpool, tasks_mod
        if __name__ == "__main__":
            with interpool.Pool(1) as pool:
                try:
                    pool.submit(tasks_mod.task, 1).result(60)
                except ImportError as exc:
                    print("ImportError |", exc)
        """))
    out = check(run_python(["main.py"], cwd=tmp_path))
    assert "ImportError | cannot run task() in a worker interpreter: its module tasks_mod imports helpers_no_subinterp" in out
    assert "keep the helpers_no_subinterp import out of tasks_mod" in out


def test_message_matches_cpython_for_a_single_phase_extension():
    """The simulation raises what CPython raises for a real single-phase
    extension imported in a subinterpreter (CPython's _testsinglephase)."""
    import importlib.util

    if importlib.util.find_spec("_testsinglephase") is None:
        pytest.skip("CPython's _testsinglephase is not installed")
    import interpool

    def probe():
        try:
            import _testsinglephase  # noqa: F401
        except ImportError as exc:
            return str(exc)
        return "imported"

    with interpool.Pool(1) as pool:
        message = pool.submit(probe).result(60)
    assert message == "module _testsinglephase does not support loading in subinterpreters"


def test_a_task_runs_a_pool_of_its_own_with_functions_of_the_script(tmp_path):
    """Inside a worker the script is loaded as __mp_main__; a pool made
    there sends its functions to its own workers all the same."""
    path = tmp_path / "nested.py"
    path.write_text(textwrap.dedent("""\
        import interpool

        def inner(x):
            return x + 1

        def outer(n):
            with interpool.Pool(1) as pool:
                return pool.submit(inner, n).result(60), list(pool.map(inner, range(3)))

        if __name__ == "__main__":
            with interpool.Pool(1) as pool:
                print(pool.submit(outer, 1).result(60))
        """))
    out = check(run_python([str(path)], cwd=tmp_path, timeout=120))
    assert out.strip() == "(2, [1, 2, 3])"
