"""A module that refuses subinterpreters (numpy here, for real): without a
fallback the call fails with SubinterpreterImportError, whose message (the
last line of the traceback) names the refusing module, the function and
the fixes, through every front door; ``python -m interpool check`` and
``interpool.check_import`` tell beforehand."""

import subprocess
import sys
import textwrap

import pytest

import helpers_lazy_numpy as hl
import helpers_no_subinterp as hn
import interpool
from helpers_util import subprocess_env

try:
    import numpy  # noqa: F401
except ImportError:
    numpy = None
needs_numpy = pytest.mark.skipif(numpy is None, reason="needs numpy (Debian packages it for 3.14 "
                                                        "and 3.15)")

FRONT_DOORS = {
    "Pool": """\
        with interpool.Pool(1) as pool:
            pool.submit(hnp.total, 3).result(60)
        """,
    "drop-in executor": """\
        with interpool.InterpreterPoolExecutor(1) as ex:
            ex.submit(hnp.total, 3).result(60)
        """,
    "Pool.map": """\
        with interpool.Pool(1) as pool:
            list(pool.map(hnp.total, range(3)))
        """,
    "asyncio": """\
        import asyncio
        async def main():
            async with interpool.Pool(1) as pool:
                await pool.run(hnp.total, 3)
        asyncio.run(main())
        """,
    "Runner": """\
        import asyncio
        async def main():
            with interpool.Runner(workers=1) as runner:
                await runner.run(hnp.total, 3)
        asyncio.run(main())
        """,
}


@needs_numpy
@pytest.mark.parametrize("body", FRONT_DOORS.values(), ids=FRONT_DOORS.keys())
def test_the_error_says_what_to_do_on_its_last_line(tmp_path, body):
    script = tmp_path / "script.py"
    script.write_text("import helpers_numpy as hnp, interpool\n"
                      "if __name__ == '__main__':\n" + textwrap.indent(textwrap.dedent(body), "    "))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last.startswith("interpool._refusal.SubinterpreterImportError: cannot run total() in "
                           "a worker interpreter: its module helpers_numpy imports numpy"), last
    assert "numpy._core._multiarray_umath does not support loading in subinterpreters" in last
    assert last.endswith('Fix: pass fallback="processes" (or "threads") to the pool to run it '
                         "there, or keep the numpy import out of helpers_numpy."), last
    assert "bad install" not in last and "NotShareableError" not in last
    assert len(last) < 400   # short


@needs_numpy
def test_an_import_while_running_names_the_function():
    with interpool.Pool(1) as pool:
        exc = pool.submit(hl.doubled, 1).exception(60)
    assert isinstance(exc, interpool.SubinterpreterImportError) and isinstance(exc, ImportError)
    assert (exc.stage, exc.function, exc.name) == ("run", "doubled", "numpy")
    assert str(exc).startswith("doubled() imported numpy in a worker interpreter")
    assert isinstance(exc.__cause__, interpool.RemoteTraceback)
    assert "bad install" in exc.__cause__.text   # numpy's own text is still there, as the cause


@needs_numpy
def test_a_coroutine_importing_it_is_named():
    with interpool.Pool(1) as pool:
        exc = pool.submit(hl.lazy_coroutine, 1).exception(60)
    assert (exc.stage, exc.function) == ("run", "lazy_coroutine")


# ------------------------------------------------------------------ check


# ------------------------------------------------------------------ fallback, any CPython
# (tests/test_fallback.py runs the same with real numpy where Debian has it)


@pytest.mark.parametrize("kind", ["processes", "threads"])
def test_fallback_with_a_module_that_refuses(kind):
    reads_global = hn.make_global_reader()   # by value, reading the refusing module's FACTOR
    with interpool.Pool(2, fallback=kind) as pool, pytest.warns(RuntimeWarning):
        assert pool.submit(hn.by_reference, 5).result(60) == 5
        assert list(pool.map(hn.by_reference, range(10))) == list(range(10))
        assert pool.submit(reads_global, 2).result(60) == 6
        assert pool.submit(hn.make_pure(), 4).result(60) == 8   # no fallback needed


def run_check(*args):
    return subprocess.run([sys.executable, "-m", "interpool", "check", *args],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)


@needs_numpy
def test_the_check_command():
    proc = run_check("numpy", "pydantic", "json")
    assert proc.returncode == 1, proc.stderr
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert lines == {
        "numpy": "refused: numpy._core._multiarray_umath does not support loading in subinterpreters",
        "pydantic": "refused: pydantic_core._pydantic_core does not support loading in subinterpreters",
        "json": "ok",
    }
    assert run_check("json", "email.message").returncode == 0


def test_the_check_command_reports_other_errors_and_usage():
    proc = run_check("no_such_module_here")
    assert proc.returncode == 2
    assert "no_such_module_here  error: ModuleNotFoundError" in proc.stdout
    proc = run_check()
    assert proc.returncode == 2 and "usage: python -m interpool check" in proc.stderr
    proc = run_check("--markdown", "json", "helpers_no_subinterp")
    assert proc.returncode == 1
    assert "| `json` | ok |" in proc.stdout
    assert "| `helpers_no_subinterp` | refused | `helpers_no_subinterp`" in proc.stdout


def test_check_import():
    ok = interpool.check_import("json")
    assert ok and ok.status == "ok" and ok.refused_by is None
    refused = interpool.check_import("helpers_no_subinterp")
    assert not refused
    assert (refused.status, refused.refused_by) == ("refused", "helpers_no_subinterp")
    # Found through the chain, behind a "bad install" message (as numpy's).
    fake = interpool.check_import("helpers_fake_numpy")
    assert fake.refused_by == "helpers_fake_numpy._core_ext"
    assert str(fake) == ("helpers_fake_numpy: refused: helpers_fake_numpy._core_ext does not "
                         "support loading in subinterpreters")
    with pytest.raises(ValueError, match="not a module name"):
        interpool.check_import("not a name")


def test_a_warning_at_import_is_reported():
    check = interpool.check_import("helpers_warns_on_import")
    assert check and check.warnings == ("RuntimeWarning: running without the C speedups",)
    assert str(check).endswith("ok; warned: RuntimeWarning: running without the C speedups")


def test_each_check_gets_a_fresh_interpreter():
    """helpers_no_subinterp refuses; json imported before it in the same
    run must not be what the second check sees, and vice versa."""
    from interpool._check import _check_all

    checks = _check_all(["helpers_no_subinterp", "json", "helpers_no_subinterp"], workers=1)
    assert [c.status for c in checks] == ["refused", "ok", "refused"]
