"""The caller's script never runs in a worker: what __main__ defines travels
by value (a script, ``python -c``, stdin), so a script that imports numpy at
top level runs its pure functions in interpreters through every front door,
needs no ``if __name__ == "__main__":`` guard, and its top level runs once.
``python -m pkg.mod`` keeps travelling by reference (workers load pkg.mod
as __mp_main__, as multiprocessing does).

Each case runs a real program in a subprocess (its own __main__), with
real numpy, joblib and Dask.
"""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from helpers_util import TESTS_DIR, run_python, subprocess_env

HANG = 120  # seconds: only to turn a hang into a failure
REPO = os.path.dirname(TESTS_DIR)


def run_script(tmp_path, source, name="script.py", timeout=HANG):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return check(run_python([str(path)], cwd=tmp_path, timeout=timeout))


def check(proc):
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout


# ------------------------------------------------------------ numpy at top level

NUMPY_SCRIPT = """\
import asyncio

import numpy as np

import interpool

print("TOP LEVEL", flush=True)
SCALE = 3


def work(x):
    return x * SCALE


async def later(x):
    await asyncio.sleep(0)
    return x + 1


with interpool.Pool(2) as pool:
    print("POOL", list(pool.map(work, range(4))), pool.submit(work, 5).result(60))

with interpool.InterpreterPoolExecutor(2) as ex:
    print("EXECUTOR", list(ex.map(work, range(4))), ex.submit(work, 5).result(60))

with interpool.InterpreterThreadPoolExecutor(2) as ex:
    print("HYBRID", ex.submit(interpool.interpreter(work), 2).result(60))


async def main():
    async with interpool.Pool(2) as pool:
        gathered = await asyncio.gather(*(pool.run(work, i) for i in range(3)))
        coros = [x async for x in pool.amap(later, range(3))]
    with interpool.Runner(workers=1) as runner:
        ran = await runner.run(work, 7)
    return gathered, coros, ran


print("ASYNCIO", *asyncio.run(main()))
print("NUMPY", int(np.arange(4).sum()))
"""


def needs_numpy():
    # Debian packages numpy for its default Python (3.14) only.
    pytest.importorskip("numpy", reason="numpy is not installed for this Python",
                        exc_type=ImportError)


@pytest.mark.parametrize("refusing", ["numpy", "helpers_no_subinterp"])
def test_script_importing_numpy_runs_its_functions_through_every_front_door(tmp_path, refusing):
    # No __main__ guard: the script makes its pools at top level.
    # helpers_no_subinterp refuses subinterpreters as numpy does, on every
    # Python this suite runs on.
    if refusing == "numpy":
        needs_numpy()
        script = NUMPY_SCRIPT
    else:
        script = NUMPY_SCRIPT.replace("import numpy as np", "import helpers_no_subinterp").replace(
            "int(np.arange(4).sum())", "helpers_no_subinterp.by_reference(6)")
    out = run_script(tmp_path, script)
    assert out.splitlines() == [
        "TOP LEVEL",
        "POOL [0, 3, 6, 9] 15",
        "EXECUTOR [0, 3, 6, 9] 15",
        "HYBRID 6",
        "ASYNCIO [0, 3, 6] [1, 2, 3] 21",
        "NUMPY 6",
    ]


def test_function_that_uses_numpy_gets_an_error_naming_it(tmp_path):
    needs_numpy()
    out = run_script(tmp_path, """\
        import numpy as np
        import interpool

        def pure(x):
            return x + 1

        def uses(x):
            return float(np.float64(x))

        with interpool.Pool(1) as pool:
            try:
                pool.submit(uses, 1).result(60)
            except ImportError as exc:
                print("ImportError |", " ".join(str(exc).split()))
            print("PURE", pool.submit(pure, 1).result(60))
        """)
    line = next(line for line in out.splitlines() if line.startswith("ImportError |"))
    assert "uses()" in line and "numpy" in line and "bad install" not in line
    assert "cannot be imported in a subinterpreter" in line
    assert "PURE 2" in out.splitlines()


def test_fake_numpy_bad_install_text_is_explained(tmp_path):
    out = run_script(tmp_path, """\
        import helpers_fake_numpy
        import interpool

        def uses():
            return helpers_fake_numpy.__name__

        with interpool.Pool(1) as pool:
            try:
                pool.submit(uses).result(60)
            except ImportError as exc:
                print("ImportError |", " ".join(str(exc).split()))
        """)
    line = next(line for line in out.splitlines() if line.startswith("ImportError |"))
    assert "helpers_fake_numpy._core_ext" in line        # the module that cannot load
    assert "uses()" in line and "bad install" not in line


# ------------------------------------------------------------ no guard, asyncio, no file


@pytest.mark.parametrize("imports", ["", "import numpy"])
def test_asyncio_script_without_guard_runs_its_top_level_once(tmp_path, imports):
    if imports:
        needs_numpy()
    out = run_script(tmp_path, imports + "\n" + textwrap.dedent("""\
        import asyncio
        import interpool

        print("TOP LEVEL", flush=True)

        def work(x):
            return x * x

        async def main():
            async with interpool.Pool() as pool:
                return await asyncio.gather(*(pool.run(work, i) for i in range(6)))

        print("RESULT", asyncio.run(main()))
        """))
    assert out.splitlines() == ["TOP LEVEL", "RESULT [0, 1, 4, 9, 16, 25]"]


MAIN_WITHOUT_A_FILE = """\
import re
import interpool

WORD = re.compile(r"[a-z]+")

def words(text):
    return WORD.findall(text)

def count(text):
    return len(words(text))

class Tally:
    def __init__(self, n):
        self.n = n

def tally(text):
    return Tally(count(text))

with interpool.Pool(1) as pool:
    print("COUNT", pool.submit(count, "a b c").result(60))
    result = pool.submit(tally, "a b").result(60)
    print("TALLY", type(result) is Tally, result.n)
"""


@pytest.mark.parametrize("imports", ["", "import numpy\n"])
@pytest.mark.parametrize("how", ["stdin", "-c"])
def test_main_without_a_file_reads_its_globals(tmp_path, how, imports):
    # Issue 19 changed this: a function reading a global of such a __main__
    # was refused at the call.
    if imports:
        needs_numpy()
    source = imports + MAIN_WITHOUT_A_FILE
    args = ["-"] if how == "stdin" else ["-c", source]
    proc = subprocess.run([sys.executable, *args], cwd=tmp_path, env=subprocess_env(),
                          input=source if how == "stdin" else None,
                          capture_output=True, text=True, timeout=HANG)
    assert check(proc).splitlines() == ["COUNT 3", "TALLY True 2"]


def test_script_without_py_suffix(tmp_path):
    path = tmp_path / "myscript"
    path.write_text("#!/usr/bin/env python3\n" + textwrap.dedent(MAIN_WITHOUT_A_FILE))
    os.chmod(path, 0o755)
    out = check(run_python([str(path)], cwd=tmp_path, timeout=HANG))
    assert out.splitlines() == ["COUNT 3", "TALLY True 2"]


def test_nested_pools_with_functions_of_the_script(tmp_path):
    # Issue 18 item 16: inside a worker, the inner pool could not load
    # __mp_main__; the script's functions travel on by value now.
    out = run_script(tmp_path, """\
        import interpool

        def leaf(x):
            return x * 2

        def branch(n):
            with interpool.Pool(2) as inner:
                return sum(inner.map(leaf, range(n)))

        with interpool.Pool(2) as pool:
            print("NESTED", pool.submit(branch, 4).result(60), list(pool.map(branch, [1, 2, 3])))
        """)
    assert out.splitlines() == ["NESTED 12 [0, 2, 6]"]


# ------------------------------------------------------------ joblib and Dask


def readme_joblib_snippet() -> str:
    """The joblib example exactly as the docs print it (docs/integrations.md)."""
    with open(os.path.join(REPO, "docs", "integrations.md")) as f:
        page = f.read()
    section = page[page.index("## `interpool.joblib`"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("imports", ["", "import numpy\n"])
def test_readme_joblib_snippet_as_one_script(tmp_path, imports):
    pytest.importorskip("joblib", reason="needs joblib (Debian: python3-joblib)")
    if imports:
        needs_numpy()
    out = run_script(tmp_path, imports + readme_joblib_snippet())
    assert out.splitlines() == ["[294, 532, 363]"]


def test_dask_runs_functions_of_a_script_that_imports_numpy(tmp_path):
    pytest.importorskip("distributed", reason="needs Dask's distributed (Debian: python3-distributed)")
    needs_numpy()
    # Dask itself needs the guard (its worker processes are spawned).
    out = run_script(tmp_path, """\
        import logging

        import numpy as np
        import dask
        from distributed import Client, LocalCluster

        from interpool.dask import InterpreterWorkerPlugin

        OFFSET = 10

        def helper(x):
            return x + OFFSET

        def work(x):
            import _interpreters
            return helper(x), _interpreters.get_current()[0] != 0

        if __name__ == "__main__":
            with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                              dashboard_address=None, silence_logs=logging.CRITICAL) as cluster:
                with Client(cluster) as client:
                    client.register_plugin(InterpreterWorkerPlugin(workers=2))
                    with dask.annotate(executor="interpool"):
                        futures = client.map(work, range(3))
                    print("DASK", client.gather(futures), int(np.arange(3).sum()))
        """, timeout=240)
    assert out.splitlines() == ["DASK [(10, True), (11, True), (12, True)] 3"]


# ------------------------------------------------------------ python -m: by reference


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

        def branch(n):
            import interpool
            with interpool.Pool(1) as inner:
                return inner.submit(task, n).result(60).value

        if __name__ == "__main__":
            import interpool
            with interpool.Pool(1) as pool:
                box = pool.submit(task, 3).result(60)
                print(type(box) is Box, box.value, __spec__.name, pool.submit(branch, 4).result(60))
        """))
    out = check(run_python(["-m", "app.cli"], cwd=tmp_path, timeout=HANG))
    assert out.split() == ["True", "6", "app.cli", "8"]


def test_python_m_module_importing_a_module_workers_cannot_load(tmp_path):
    pkg = tmp_path / "app"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(textwrap.dedent("""\
        import helpers_no_subinterp

        def task(x):
            return x

        if __name__ == "__main__":
            import interpool
            with interpool.Pool(1) as pool:
                try:
                    pool.submit(task, 1).result(60)
                except ImportError as exc:
                    print("ImportError |", " ".join(str(exc).split()))
        """))
    out = check(run_python(["-m", "app.cli"], cwd=tmp_path, timeout=HANG))
    line = next(line for line in out.splitlines() if line.startswith("ImportError"))
    assert "cannot run task()" in line
    assert "its module app.cli imports helpers_no_subinterp" in line
    assert "does not support loading in subinterpreters" in line
    assert 'Fix: pass fallback="processes"' in line
    assert "keep the helpers_no_subinterp import out of app.cli" in line


def test_module_importing_a_module_workers_cannot_load(tmp_path):
    (tmp_path / "tasks_mod.py").write_text("import helpers_no_subinterp\n\ndef task(x):\n    return x\n")
    (tmp_path / "main.py").write_text(textwrap.dedent("""\
        import interpool, tasks_mod
        with interpool.Pool(1) as pool:
            try:
                pool.submit(tasks_mod.task, 1).result(60)
            except ImportError as exc:
                print("ImportError |", exc)
        """))
    out = check(run_python(["main.py"], cwd=tmp_path, timeout=HANG))
    assert "ImportError | cannot run task() in a worker interpreter" in out
    assert "its module tasks_mod imports helpers_no_subinterp" in out
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
