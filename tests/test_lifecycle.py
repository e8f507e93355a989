"""Lifetimes that need their own process: __main__ scripts and interpreter exit.

Each test runs a fresh ``sys.executable`` with interpool (``src``) and this
directory (for helpers_tasks) on PYTHONPATH, and checks the exit code, the
output, and that nothing at all went to stderr (in particular no CPython
"remaining subinterpreters" warning and no unraisable-exception reports).
"""

import shutil
import textwrap

import pytest

from helpers_util import TESTS_DIR, run_python

TIMEOUT = 60  # generous: only a hang should ever get near it


def run_script(tmp_path, source, *args):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return run_python([str(script), *args], cwd=tmp_path, timeout=TIMEOUT)


def assert_clean(proc, returncode=0):
    assert proc.returncode == returncode, (proc.stdout, proc.stderr)
    assert proc.stderr == "", proc.stderr


# ------------------------------------------------------------ __main__ scripts


def copy_main_script(tmp_path):
    script = tmp_path / "main_script.py"
    shutil.copy(f"{TESTS_DIR}/helpers_main_script.py", script)
    barrier_dir = tmp_path / "barrier"
    barrier_dir.mkdir()
    record = tmp_path / "record.txt"
    return script, barrier_dir, record


def test_functions_defined_in_a_main_script(tmp_path):
    script, barrier_dir, record = copy_main_script(tmp_path)
    proc = run_python(
        [str(script), "functions", str(barrier_dir)],
        cwd=tmp_path,
        timeout=TIMEOUT,
        INTERPOOL_TEST_RECORD=str(record),
    )
    assert_clean(proc)
    lines = proc.stdout.splitlines()
    assert lines.count("MAIN BLOCK") == 1
    assert "RESULT ['a', 'b']" in lines
    assert "UNBOX 5" in lines
    assert "MAP [1, 2]" in lines
    assert "SCRIPT ERROR from the script" in lines
    # Issue 19 changed this: the module level ran once, in the caller (it
    # used to run again in each worker, as "__mp_main__").
    assert record.read_text().split() == ["__main__"]


def test_main_script_object_as_argument_of_a_non_main_function(tmp_path):
    script, barrier_dir, record = copy_main_script(tmp_path)
    proc = run_python(
        [str(script), "argument", str(barrier_dir)],
        cwd=tmp_path,
        timeout=TIMEOUT,
        INTERPOOL_TEST_RECORD=str(record),
    )
    assert_clean(proc)
    assert "ARGUMENT Box(value=7)" in proc.stdout.splitlines()


def test_unguarded_script_makes_its_pool_at_top_level(tmp_path):
    # Issue 19 changed this: workers loaded the script, so a pool made at its
    # top level was refused there.  They never run the script now: no
    # `if __name__ == "__main__":` guard is needed, and the top level runs once.
    proc = run_script(
        tmp_path,
        """
        import interpool

        print("TOP LEVEL")

        def work(x):
            return x * 2

        pool = interpool.Pool(2)
        print("RESULT", pool.submit(work, 21).result(60), sorted(pool.map(work, range(4))))
        pool.shutdown()
        """,
    )
    assert_clean(proc)
    assert proc.stdout.splitlines() == ["TOP LEVEL", "RESULT 42 [0, 2, 4, 6]"]


def test_interactive_main_function_reads_its_globals(tmp_path):
    # Code given with -c has a __main__ without a file, like the REPL.
    # Issue 19 changed this: a function that reads its globals used to be
    # refused; it travels by value with them.
    code = textwrap.dedent(
        """
        import interpool
        K = 2
        def typed_in():
            return K
        def pure():
            return 1
        with interpool.Pool(1) as pool:
            print("GLOBALS", pool.submit(typed_in).result(60))
            print("BY VALUE", pool.submit(pure).result(60))
            import helpers_tasks
            print("STILL WORKS", pool.submit(helpers_tasks.add, 1, 2).result(60))
        """
    )
    proc = run_python(["-c", code], cwd=tmp_path, timeout=TIMEOUT)
    assert_clean(proc)
    assert proc.stdout.splitlines() == ["GLOBALS 2", "BY VALUE 1", "STILL WORKS 3"]


# ------------------------------------------------------------ interpreter exit


EXIT_SCRIPTS = {
    "idle pool never shut down": """
        import interpool
        pool = interpool.Pool(2)
        print("OK")
    """,
    "pool exits before its workers are ready": """
        import interpool
        pool = interpool.Pool(4)
        print("OK")
        raise SystemExit(0)
    """,
    "used pool never shut down": """
        import helpers_tasks, interpool
        pool = interpool.Pool(2)
        assert pool.submit(helpers_tasks.add, 1, 2).result(60) == 3
        assert list(pool.map(helpers_tasks.square, range(10))) == [i * i for i in range(10)]
        print("OK")
    """,
    "exit while a task is running": """
        import helpers_tasks, interpool
        pool = interpool.Pool(1)
        running = pool.submit(helpers_tasks.sleep_then_return, 0.5, "late")
        queued = pool.submit(helpers_tasks.sleep_then_return, 0.1, "later")
        while not running.running():
            pass
        print("OK")
    """,
    "exit with queued tasks and a pool dropped with del": """
        import helpers_tasks, interpool
        pool = interpool.Pool(1)
        futures = [pool.submit(helpers_tasks.sleep_then_return, 0.05, i) for i in range(8)]
        del pool
        print("OK")
    """,
    "exit with an abandoned map iterator": """
        import helpers_tasks, interpool
        pool = interpool.Pool(2)
        it = pool.map(helpers_tasks.sleep_then_return, [0.05] * 8)
        next(it)
        lazy = pool.map(helpers_tasks.square, iter(range(10**9)), buffersize=4)
        next(lazy)
        print("OK")
    """,
    "exit after shutdown(wait=False) with a running task": """
        import helpers_tasks, interpool
        pool = interpool.Pool(1)
        future = pool.submit(helpers_tasks.sleep_then_return, 0.3, 1)
        pool.submit(helpers_tasks.sleep_then_return, 0.1, 2)
        pool.shutdown(wait=False)
        print("OK")
    """,
    "exit after shutdown(cancel_futures=True, wait=False)": """
        import helpers_tasks, interpool
        pool = interpool.Pool(1)
        futures = [pool.submit(helpers_tasks.sleep_then_return, 0.05, i) for i in range(8)]
        pool.shutdown(wait=False, cancel_futures=True)
        print("OK")
    """,
    "exit with a broken pool": """
        import helpers_tasks, interpool
        pool = interpool.Pool(2, initializer=helpers_tasks.failing_initializer, initargs=("no",))
        future = pool.submit(helpers_tasks.add, 1, 2)
        try:
            future.result(60)
        except interpool.BrokenPool:
            pass
        except BaseException:
            raise
        print("OK")
    """,
    "several pools, some shut down": """
        import helpers_tasks, interpool
        pools = [interpool.Pool(1) for _ in range(4)]
        futures = [p.submit(helpers_tasks.sleep_then_return, 0.05, i) for i, p in enumerate(pools)]
        pools[0].shutdown()
        pools[1].shutdown(wait=False)
        del pools[2]
        print("OK")
    """,
    "exit with the results thread waiting (done-callbacks)": """
        import helpers_tasks, interpool
        pool = interpool.Pool(1)
        futures = [pool.submit(helpers_tasks.sleep_then_return, 0.05, i) for i in range(8)]
        for f in futures:
            f.add_done_callback(lambda f: None)   # starts the results thread
        print("OK")
    """,
    "exit while a non-daemon thread still uses a pool": """
        import threading, helpers_tasks, interpool
        submitted = threading.Event()
        def run():
            pool = interpool.Pool(1)
            future = pool.submit(helpers_tasks.sleep_then_return, 0.2, 1)
            submitted.set()
            assert future.result(60) == 1
        threading.Thread(target=run).start()
        submitted.wait(60)
        print("OK")
    """,
}


@pytest.mark.parametrize("source", EXIT_SCRIPTS.values(), ids=EXIT_SCRIPTS.keys())
def test_interpreter_exit_with_live_pool(tmp_path, source):
    proc = run_script(tmp_path, source, str(tmp_path))
    if "failing_initializer" in source:
        # Like the stdlib executors, a failing initializer is logged once
        # ("Exception in initializer:" on concurrent.futures), with the
        # worker's traceback; nothing else may reach stderr.
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert proc.stderr.startswith("Exception in initializer:"), proc.stderr
        assert proc.stderr.count("Exception in initializer:") == 1, proc.stderr
        assert "CustomError: no" in proc.stderr
        assert "remaining subinterpreters" not in proc.stderr
    else:
        assert_clean(proc)
    assert proc.stdout.splitlines() == ["OK"]


def test_exit_code_of_sys_exit_with_live_pool(tmp_path):
    proc = run_script(
        tmp_path,
        """
        import sys, helpers_tasks, interpool
        pool = interpool.Pool(2)
        pool.submit(helpers_tasks.sleep_then_return, 0.1)
        sys.exit(3)
        """,
    )
    assert_clean(proc, returncode=3)


def test_uncaught_exception_with_live_pool(tmp_path):
    proc = run_script(
        tmp_path,
        """
        import helpers_tasks, interpool
        pool = interpool.Pool(2)
        pool.submit(helpers_tasks.sleep_then_return, 0.1)
        raise ValueError("the script failed")
        """,
    )
    assert proc.returncode == 1
    assert proc.stderr.rstrip().endswith("ValueError: the script failed")
    assert "subinterpreters" not in proc.stderr
    assert proc.stderr.count("Traceback") == 1


def test_queued_tasks_run_before_exit(tmp_path):
    # Without cancel_futures, work handed to a pool that is never shut down
    # still runs before the process exits (its workers finish the queue).
    proc = run_script(
        tmp_path,
        """
        import os, sys, helpers_tasks, interpool
        pool = interpool.Pool(1)
        for i in range(5):
            pool.submit(helpers_tasks.touch, os.path.join(sys.argv[1], f"done-{i}"))
        print("OK")
        """,
        str(tmp_path),
    )
    assert_clean(proc)
    assert sorted(p.name for p in tmp_path.glob("done-*")) == [f"done-{i}" for i in range(5)]
