"""Workers' output and logging behave as threads': print() writes, whole
lines, to the main interpreter's sys.stdout/sys.stderr as they are when the
line arrives, before the task's result is delivered; log records are
handled by the main interpreter's logging configuration.  Both can be
turned off per pool.  Futures abandoned by a closed event loop stay quiet."""

import asyncio
import contextlib
import gc
import io
import logging
import re
import textwrap

import pytest

import helpers_worker_output as hw
import interpool
from helpers_util import run_python


@pytest.fixture(scope="module")
def pool():
    p = interpool.Pool(2, name="output-pool")
    assert p.wait_ready(60)
    yield p
    p.shutdown()


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def handler_on(name, level):
    logger = logging.getLogger(name)
    handler = Records()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


# ------------------------------------------------------------ output


def test_print_is_written_before_the_result_returns(pool):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i in range(20):
            assert pool.submit(hw.say_then_return, f"line {i}", i).result(60) == i
            assert out.getvalue().endswith(f"line {i}\n")   # already there when result() returned
    assert out.getvalue() == "".join(f"line {i}\n" for i in range(20))


def test_stderr_and_a_partial_line(pool):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert pool.submit(hw.say, "to stderr", err=True).result(60) == 1
        assert pool.submit(hw.partial_line, "no newline").result(60) == "done"
        assert pool.submit(hw.say, "a", "b", end="").result(60) == 2
    assert err.getvalue() == "to stderr\n"
    assert out.getvalue() == "no newlineab"


def test_text_after_the_last_newline_is_written_when_the_task_ends(pool):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert pool.submit(hw.partial_line, "line1\nline2").result(60) == "done"
        assert out.getvalue() == "line1\nline2"
        assert pool.submit(hw.say, "x\ny", end="").result(60) == 1
        assert out.getvalue() == "line1\nline2x\ny"


def test_pytest_capsys_sees_worker_output(pool, capsys):
    pool.submit(hw.say, "captured by capsys").result(60)
    assert capsys.readouterr().out == "captured by capsys\n"


def test_output_follows_the_current_stdout(pool):
    first, second = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(first):
        pool.submit(hw.say, "one").result(60)
    with contextlib.redirect_stdout(second):
        pool.submit(hw.say, "two").result(60)
    assert (first.getvalue(), second.getvalue()) == ("one\n", "two\n")


def test_every_front_door_writes_before_results(pool):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for value in pool.map(hw.say_then_return, [f"m{i}" for i in range(10)], range(10)):
            assert f"m{value}\n" in out.getvalue()

        async def main():
            got = await pool.run(hw.say_async, "from run")
            assert "from run\n" in out.getvalue()
            async for value in pool.amap(hw.say_async, ["from amap"]):
                assert "from amap\n" in out.getvalue()
            return got

        assert asyncio.run(main()) == "from run"


def test_ctrl_c_while_output_is_written_stops_the_map(tmp_path):
    """A Ctrl-C that lands while the caller writes workers' output (just
    before a batch resolves) is raised there, as one from a done-callback:
    the map (or result()) stops, nothing is reported as "ignored", the
    future still resolves, and the pool goes on.
    (A subprocess: without the background writer, only the caller writes.)"""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""\
        import contextlib
        import helpers_worker_output as hw, interpool
        from interpool import _forwarding
        _forwarding._run = lambda chan: None   # no background writer thread

        class Stdout:
            def __init__(self):
                self.lines, self.interrupted = [], False
            def write(self, text):
                if not self.interrupted:
                    self.interrupted = True
                    raise KeyboardInterrupt   # as if Ctrl-C landed here
                self.lines.append(text)
            def flush(self):
                pass

        if __name__ == "__main__":
            with interpool.Pool(2) as pool:
                out = Stdout()
                with contextlib.redirect_stdout(out):
                    try:
                        list(pool.map(hw.say_then_return, ["a"] * 20, range(20)))
                        stopped = False
                    except KeyboardInterrupt:
                        stopped = True
                    again = list(pool.map(hw.say_then_return, ["b"] * 5, range(5)))
                    out.interrupted = False
                    future = pool.submit(hw.say_then_return, "c", 7)
                    try:
                        future.result()
                        value = None
                    except KeyboardInterrupt:
                        value = future.result()   # resolved all the same
                print("result:", stopped, again == list(range(5)), "".join(out.lines).count("b"),
                      value)   # the stopped map's other "a" lines may still follow
        """))
    r = run_python([str(script)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = [line.split()[1:] for line in r.stdout.splitlines() if line.startswith("result:")]
    assert result == [["True", "True", "5", "7"]], (r.stdout, r.stderr)
    assert "ignored" not in r.stderr, r.stderr


def test_lines_from_many_workers_never_tear():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        with interpool.Pool(2) as p:
            futures = [p.submit(hw.many_lines, tag, 1000, 120) for tag in "abcd"]
            assert [f.result(60) for f in futures] == [1000] * 4
    lines = out.getvalue().splitlines()
    assert len(lines) == 4000
    pattern = re.compile(r"<([a-d]):(\d+):x{120}:\1>")
    assert all(pattern.fullmatch(line) for line in lines)
    for tag in "abcd":   # each task's lines in its order
        mine = [int(line.split(":")[1]) for line in lines if line.startswith(f"<{tag}:")]
        assert mine == list(range(1000))


def test_forward_output_off_writes_to_the_file_descriptor(capfd):
    with interpool.Pool(1, forward_output=False) as p:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            p.submit(hw.say, "straight to fd 1").result(60)
        assert out.getvalue() == ""
    assert "straight to fd 1" in capfd.readouterr().out


# ------------------------------------------------------------ logging


def test_worker_does_not_import_logging_until_a_task_does():
    with interpool.Pool(1) as p:
        assert p.submit(hw.logging_loaded).result(60) is False
        with handler_on("hw.first", logging.INFO) as h:
            assert p.submit(hw.log, "hw.first", logging.INFO, "first record %d", 1).result(60)
        assert [r.getMessage() for r in h.records] == ["first record 1"]
        assert p.submit(hw.logging_loaded).result(60) is True


def test_records_reach_the_main_handlers_when_levels_allow(pool):
    with handler_on("hw.levels", logging.INFO) as h:
        pool.submit(hw.log, "hw.levels", logging.DEBUG, "dropped").result(60)
        pool.submit(hw.log, "hw.levels", logging.INFO, "kept %s", "info").result(60)
        pool.submit(hw.log, "hw.levels.child", logging.WARNING, "child %d", 7).result(60)
    assert [(r.name, r.levelname, r.getMessage()) for r in h.records] == [
        ("hw.levels", "INFO", "kept info"),
        ("hw.levels.child", "WARNING", "child 7"),
    ]
    record = h.records[0]
    assert record.threadName.startswith("output-pool_")
    assert record.interpool_worker == record.threadName
    assert record.funcName == "log" and record.module == "helpers_worker_output"


def test_record_formatting_and_exceptions_use_the_main_configuration(pool):
    with handler_on("hw.fmt", logging.INFO) as h:
        h.setFormatter(logging.Formatter("%(threadName)s|%(levelname)s|%(message)s"))
        pool.submit(hw.log_exception, "hw.fmt").result(60)
    text = h.format(h.records[0])
    assert re.match(r"output-pool_\d\|ERROR\|it failed\n", text)
    assert "ValueError: bad value" in text and "in log_exception" in text


def test_forward_logging_off():
    with interpool.Pool(1, forward_logging=False) as p, handler_on("hw.off", logging.INFO) as h:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            p.submit(hw.log, "hw.off", logging.WARNING, "kept in the worker").result(60)
        assert h.records == []
        assert "kept in the worker" in err.getvalue()   # the worker's own last resort, forwarded output


# ------------------------------------------------------------ quiet by default


def test_run_futures_abandoned_by_a_closed_loop_are_quiet(pool):
    with handler_on("asyncio", logging.DEBUG) as h:
        loop = asyncio.new_event_loop()

        async def abandon():
            return [pool.run(hw.slow, 0.2) for _ in range(20)]

        futures = loop.run_until_complete(abandon())
        loop.close()
        assert not any(f.done() for f in futures)
        del futures

        async def again():   # the pool notices the closed loop: its futures fail
            return await pool.run(hw.say_then_return, "", 1)

        with contextlib.redirect_stdout(io.StringIO()):
            assert asyncio.run(again()) == 1
        gc.collect()
    assert not [r for r in h.records if "never retrieved" in r.getMessage()]
