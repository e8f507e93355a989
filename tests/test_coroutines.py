"""Coroutine tasks: ``async def`` functions run on each worker's own event loop.

Covers ``Pool.run/submit/map/amap`` with coroutine functions, ``concurrency``
(coroutines per worker), ``loop_factory``, loop-lived state made by (async)
initializers (with a real per-worker connection to a loopback server),
cancellation inside the worker (before start, while awaiting, while
computing), shutdown and interpreter exit with coroutines in flight, bad
input, and scale.

Behaviour only, never timings: tasks in tests/helpers_coro.py coordinate with
the test through marker files in tmp_path (NAME.started, NAME.cancelled,
NAME.finished; the test writes NAME.go or a gate file).  No pytest-asyncio:
each test drives its coroutine with ``arun`` (asyncio.run, bounded).
"""

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import helpers_coro as hc
import interpool

TIMEOUT = 60.0  # upper bound for anything that must not hang
TESTS = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(os.path.abspath(interpool.__file__)))
CONCURRENCY = [1, 16]


def arun(coro_fn, *args):
    """asyncio.run(coro_fn(*args)), bounded by TIMEOUT."""

    async def bounded():
        async with asyncio.timeout(TIMEOUT):
            return await coro_fn(*args)

    return asyncio.run(bounded())


async def await_marker(directory, name, timeout=30.0):
    """Poll (without blocking the loop) until directory/name exists."""
    path = os.path.join(directory, name)
    async with asyncio.timeout(timeout):
        while not os.path.exists(path):
            await asyncio.sleep(0.002)


def wait_marker(directory, name, timeout=30.0):
    path = os.path.join(directory, name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.002)


def markers(directory):
    return set(os.listdir(directory))


def boom_line():
    import inspect

    lines, first = inspect.getsourcelines(hc.boom)
    for offset, line in enumerate(lines):
        if "BOOM-LINE" in line:
            return first + offset
    raise AssertionError("marker line not found")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def shared_pools():
    """A 2-worker pool per concurrency, for tests that never block workers."""
    pools = {c: interpool.Pool(2, concurrency=c, name=f"coro-{c}") for c in CONCURRENCY}
    for p in pools.values():
        assert p.wait_ready(TIMEOUT)
    yield pools
    for p in pools.values():
        p.shutdown()


@pytest.fixture(params=CONCURRENCY, ids=lambda c: f"conc{c}")
def conc(request):
    return request.param


@pytest.fixture
def pool(shared_pools, conc):
    return shared_pools[conc]


@pytest.fixture
def make_pool():
    """Fresh pools for tests that block or break them; never left running."""
    made = []

    def make(*args, **kwargs):
        p = interpool.Pool(*args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ results


def test_run_coroutine_function(pool):
    async def main():
        assert await pool.run(hc.add, 1, 2) == 3
        assert await pool.run(hc.add, 1, y=2, delay=0.001) == 3
        assert await pool.run(hc.no_await, 21) == 42  # never awaits anything
        assert await pool.run(hc.echo, {"k": [1, (2, 3)]}) == {"k": [1, (2, 3)]}
        # sync functions in the same pool
        assert await pool.run(hc.square, 9) == 81
        results = await asyncio.gather(
            *(pool.run(hc.add if i % 2 else hc.sync_add, i, 1) for i in range(100))
        )
        assert results == [i + 1 for i in range(100)]
        ids = await asyncio.gather(*(pool.run(hc.loop_id) for _ in range(20)))
        assert hc.interp_id() not in {i for i, _ in ids}  # ran in workers

    arun(main)


def test_exception_keeps_type_and_traceback(pool):
    async def main():
        with pytest.raises(hc.CoroError, match="kaput") as info:
            await pool.run(hc.boom, "kaput")
        assert info.value.code == 42
        cause = info.value.__cause__
        assert isinstance(cause, interpool.RemoteTraceback)
        assert f"line {boom_line()}, in boom" in cause.text
        # and through submit's concurrent future
        with pytest.raises(hc.CoroError) as info:
            pool.submit(hc.boom, "again").result(TIMEOUT)
        assert f"line {boom_line()}, in boom" in info.value.__cause__.text

    arun(main)


def test_failing_coroutine_fails_only_its_own_future(make_pool, conc, tmp_path):
    d = str(tmp_path)
    p = make_pool(1, concurrency=conc)

    async def main():
        siblings = []
        if conc > 1:  # mid-flight in the same worker while the other one fails
            siblings = [p.run(hc.gated, d, f"s{i}") for i in range(3)]
            for i in range(3):
                await await_marker(d, f"s{i}.started")
        bad = p.run(hc.boom_after, d, "bad", "only me")
        hc.mark(d, "bad.go")
        with pytest.raises(ValueError, match="only me"):
            await bad
        hc.mark(d, "gate")
        assert await asyncio.gather(*siblings) == [f"s{i}" for i in range(len(siblings))]
        results = await asyncio.gather(
            *(p.run(hc.boom if i == 5 else hc.add, *(("x",) if i == 5 else (i, 0)))
              for i in range(10)),
            return_exceptions=True,
        )
        assert [r for i, r in enumerate(results) if i != 5] == [i for i in range(10) if i != 5]
        assert isinstance(results[5], hc.CoroError)
        assert await p.run(hc.add, 2, 2) == 4  # the worker goes on

    arun(main)


def test_submit_map_amap_wrap_accept_coroutine_functions(pool):
    assert pool.submit(hc.add, 2, 3).result(TIMEOUT) == 5
    assert list(pool.map(hc.echo, range(20))) == list(range(20))
    assert list(pool.map(hc.echo, range(20), chunksize=3)) == list(range(20))
    assert list(pool.map(hc.add, range(5), range(5), buffersize=2)) == [0, 2, 4, 6, 8]

    async def main():
        assert [x async for x in pool.amap(hc.echo, range(20))] == list(range(20))
        unordered = [x async for x in pool.amap(hc.echo, range(20), ordered=False)]
        assert sorted(unordered) == list(range(20))
        seen = []
        async for fut in pool.as_completed([(hc.add, 1, 1), pool.run(hc.echo, 7)]):
            seen.append(await fut)
        assert sorted(seen) == [2, 7]
        wrapped = pool.wrap(hc.add)
        assert await wrapped(20, 22) == 42

    arun(main)


def test_map_chunks_of_coroutines_keep_tracebacks(pool):
    with pytest.raises(hc.CoroError) as info:
        list(pool.map(hc.boom, ["a", "b"], chunksize=2))
    assert "in boom" in info.value.__cause__.text


# ------------------------------------------------------------------ concurrency


def test_concurrency_argument_is_checked():
    with pytest.raises(ValueError, match="concurrency"):
        interpool.Pool(1, concurrency=0)
    with pytest.raises(TypeError, match="concurrency"):
        interpool.Pool(1, concurrency=True)
    with pytest.raises(TypeError, match="concurrency"):
        interpool.Pool(1, concurrency=2.0)
    with pytest.raises(TypeError, match="loop_factory"):
        interpool.Pool(1, loop_factory="asyncio")
    new_loop = asyncio.new_event_loop   # issue 12: a lambda travels by value, a closure does not here
    with pytest.raises(TypeError, match="loop_factory"):
        interpool.Pool(1, loop_factory=lambda: new_loop())


def test_default_concurrency_runs_one_task_per_worker(make_pool, tmp_path):
    d = str(tmp_path)
    p = make_pool(1)
    assert p.concurrency == 1
    first = p.submit(hc.gated, d, "first")
    second = p.submit(hc.gated, d, "second")
    wait_marker(d, "first.started")
    time.sleep(0.1)  # the worker would have had time to start the second one
    assert "second.started" not in markers(d)
    assert not second.running()
    hc.mark(d, "gate")
    assert first.result(TIMEOUT) == "first"
    assert second.result(TIMEOUT) == "second"


def test_concurrency_caps_coroutines_per_worker(make_pool, tmp_path):
    d = str(tmp_path)
    p = make_pool(2, concurrency=4)
    assert p.concurrency == 4
    futures = [p.submit(hc.gated, d, f"g{i}") for i in range(11)]
    for i in range(8):
        wait_marker(d, f"g{i}.started")  # FIFO: the first 8 fill both workers
    time.sleep(0.1)  # time enough to take more, were the cap not kept
    assert {m for m in markers(d) if m.endswith(".started")} == {
        f"g{i}.started" for i in range(8)
    }
    # the rest wait in the pool's queue, not in a worker: cancel() still works
    assert futures[10].cancel() and futures[10].cancelled()
    hc.mark(d, "gate")
    assert [f.result(TIMEOUT) for f in futures[:10]] == [f"g{i}" for i in range(10)]
    assert "g10.started" not in markers(d)


def test_coroutines_of_one_worker_run_together(make_pool, tmp_path):
    d = str(tmp_path)
    p = make_pool(1, concurrency=8)
    futures = [p.submit(hc.running_together, d, f"t{i}", 8) for i in range(8)]
    assert [f.result(TIMEOUT) for f in futures] == [8] * 8


def test_sync_functions_with_concurrency(make_pool, tmp_path):
    d = str(tmp_path)
    p = make_pool(2, concurrency=16)

    async def main():
        mixed = await asyncio.gather(
            *(p.run(hc.square if i % 3 else hc.add, *((i,) if i % 3 else (i, i)))
              for i in range(300))
        )
        assert mixed == [i * i if i % 3 else 2 * i for i in range(300)]
        assert list(p.map(hc.square, range(50), chunksize=7)) == [i * i for i in range(50)]
        # a sync task and coroutines in flight together
        coros = [p.run(hc.gated, d, f"c{i}") for i in range(4)]
        sync = p.run(hc.sync_gated, d, "s")
        await await_marker(d, "s.started")
        hc.mark(d, "gate")
        assert await sync == "s"
        assert await asyncio.gather(*coros) == [f"c{i}" for i in range(4)]

    arun(main)


# ------------------------------------------------------------------ loop_factory


@pytest.mark.parametrize("factory, expected", [
    (None, "_UnixSelectorEventLoop"),
    (hc.plain_loop, "_UnixSelectorEventLoop"),
    (hc.marked_loop, "MarkedLoop"),
])
def test_loop_factory_makes_the_workers_loop(make_pool, conc, factory, expected):
    p = make_pool(2, concurrency=conc, loop_factory=factory)
    names = {p.submit(hc.loop_name).result(TIMEOUT) for _ in range(8)}
    assert names == {expected}
    assert p.submit(hc.square, 3).result(TIMEOUT) == 9


@pytest.mark.parametrize("conc_", [
    pytest.param(1),
    16,
], ids=["conc1", "conc16"])
def test_loop_factory_used_by_map_chunks(make_pool, conc_):
    p = make_pool(1, concurrency=conc_, loop_factory=hc.marked_loop)
    assert list(p.map(hc.loop_name, range(4), chunksize=2)) == ["MarkedLoop"] * 4
    assert p.submit(hc.loop_name).result(TIMEOUT) == "MarkedLoop"


def _import_uvloop():
    try:
        import uvloop
    except ImportError as exc:  # 3.15: uvloop.loop is not built for it
        # Keep only the text: on 3.15, formatting a traceback that chains
        # this error re-imports uvloop inside the traceback module and fails.
        return None, f"{type(exc).__name__}: {exc}"
    return uvloop, None


_UVLOOP, _UVLOOP_ERROR = _import_uvloop()


def _uvloop_new_event_loop():
    if _UVLOOP is None:
        pytest.skip(f"uvloop does not import in the main interpreter here ({_UVLOOP_ERROR})")
    return _UVLOOP.new_event_loop


def _outcome(pool, fn, *args):
    """Submit fn(*args) and wait: ("ok", result), ("broken", message) or
    ("error", "Type: message").  A broken pool may refuse at submit."""
    try:
        return "ok", pool.submit(fn, *args).result(TIMEOUT)
    except interpool.BrokenPool as exc:
        return "broken", str(exc)
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("which", ["uvloop.new_event_loop", "imports uvloop", "raises"])
def test_failing_loop_factory_fails_clearly(make_pool, conc, which):
    factory = {
        "uvloop.new_event_loop": _uvloop_new_event_loop,
        "imports uvloop": lambda: hc.uvloop_loop,
        "raises": lambda: hc.failing_loop,
    }[which]()
    # uvloop: "does not support loading in subinterpreters" (3.14), or
    # "No module named 'uvloop.loop'" (3.15, where it is not built at all)
    why = "no loop for you" if which == "raises" else "uvloop"
    p = make_pool(1, concurrency=conc, loop_factory=factory)
    kind, text = _outcome(p, hc.loop_name)
    assert kind in ("broken", "error"), (kind, text)
    assert why in text, text
    if which != "raises":
        assert "subinterpreters" in text or "uvloop.loop" in text, text
    if kind == "broken":  # the pool broke: every later task says why
        assert "event loop" in text, text
        kind2, text2 = _outcome(p, hc.square, 3)
        assert kind2 == "broken" and why in text2
    else:  # only coroutine tasks fail; sync ones still run
        assert _outcome(p, hc.square, 3) == ("ok", 9)
        kind2, text2 = _outcome(p, hc.loop_name)
        assert kind2 == "error" and why in text2
    p.shutdown(wait=True)  # and nothing hangs


@pytest.mark.parametrize("conc_", [
    pytest.param(1),
    16,
], ids=["conc1", "conc16"])
def test_unloadable_loop_factory_error_names_loop_factory(make_pool, conc_):
    p = make_pool(1, concurrency=conc_, loop_factory=_uvloop_new_event_loop())
    kind, text = _outcome(p, hc.loop_name)
    assert kind != "ok"
    first_line = text.splitlines()[0]
    assert "loop_factory" in first_line or "event loop failed" in first_line, text


@pytest.mark.parametrize("conc_", [
    pytest.param(1),
    16,
], ids=["conc1", "conc16"])
def test_failing_loop_factory_leaves_no_unawaited_coroutine(make_pool, conc_, capfd):
    p = make_pool(1, concurrency=conc_, loop_factory=hc.failing_loop)
    for _ in range(2):
        assert _outcome(p, hc.loop_name)[0] != "ok"
    p.shutdown(wait=True)
    err = capfd.readouterr().err
    assert "never awaited" not in err, err


def test_uvloop_does_not_import_in_a_worker(make_pool):
    p = make_pool(1)
    text = p.submit(hc.import_error_text, "uvloop").result(TIMEOUT)
    assert text is not None and "uvloop" in text, text


# ------------------------------------------------------------------ loop-lived state


def test_worker_loop_lives_as_long_as_the_worker(make_pool, conc):
    p = make_pool(1, concurrency=conc)
    ids = {p.submit(hc.loop_id).result(TIMEOUT) for _ in range(5)}
    ids |= set(p.map(hc.loop_id, range(5)))
    assert len(ids) == 1  # one interpreter, one loop, for every task


@pytest.mark.parametrize("init", ["async", "sync"])
def test_initializer_state_reused_by_later_tasks(make_pool, conc, init):
    initializer = hc.async_init_event if init == "async" else hc.sync_init_event
    p = make_pool(2, concurrency=conc, initializer=initializer, initargs=("tag",))
    assert p.wait_ready(TIMEOUT)

    async def main():
        # each task waits on the asyncio.Event the initializer stored
        return await asyncio.gather(*(p.run(hc.use_event) for _ in range(40)))

    assert arun(main) == [("tag", 1)] * 40  # the initializer ran once per worker


def test_async_initializer_runs_on_the_factory_loop(make_pool, conc):
    p = make_pool(1, concurrency=conc, loop_factory=hc.marked_loop,
                  initializer=hc.async_init_event, initargs=("m",))
    assert p.submit(hc.use_event).result(TIMEOUT) == ("m", 1)
    assert p.submit(hc.loop_name).result(TIMEOUT) == "MarkedLoop"


class LoopbackServer:
    """A line server on 127.0.0.1 in a background thread's asyncio loop.

    Says its connection's name on connect, then answers each line with
    "LINE via NAME"; counts connections and requests."""

    def __init__(self):
        self.connections = 0
        self.requests = 0
        self.writers = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self.handle, "127.0.0.1", 0)
            )
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="loopback-server", daemon=True)
        self.thread.start()
        assert ready.wait(TIMEOUT)
        self.host, self.port = self.server.sockets[0].getsockname()[:2]

    async def handle(self, reader, writer):
        self.connections += 1
        name = f"conn{self.connections}"
        self.writers.append(writer)
        try:
            writer.write(f"{name}\n".encode())
            while line := await reader.readline():
                self.requests += 1
                writer.write(f"{line.decode().strip()} via {name}\n".encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def close(self):
        async def stop():
            self.server.close()
            for w in self.writers:
                w.close()
            await asyncio.gather(*(w.wait_closed() for w in self.writers),
                                 return_exceptions=True)
            await asyncio.wait_for(self.server.wait_closed(), TIMEOUT)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def server():
    s = LoopbackServer()
    yield s
    s.close()


@pytest.mark.parametrize("workers", [1, 3])
def test_per_worker_connection_serves_many_tasks(make_pool, conc, server, workers):
    p = make_pool(workers, concurrency=conc, initializer=hc.open_connection,
                  initargs=(server.host, server.port))
    assert p.wait_ready(TIMEOUT)
    n = 300

    async def main():
        return await asyncio.gather(*(p.run(hc.ask, f"req{i}") for i in range(n)))

    replies = arun(main)
    names = set()
    for i, (name, reply) in enumerate(replies):
        assert reply == f"req{i} via {name}"
        names.add(name)
    names |= {name for name, _ in p.map(hc.ask, ["more"] * 30)}
    p.shutdown(wait=True)
    assert server.connections == workers  # ONE connection per worker ...
    assert server.requests == n + 30  # ... served every request
    assert names <= {f"conn{i + 1}" for i in range(workers)}


# ------------------------------------------------------------------ cancellation


def test_cancel_while_awaiting(make_pool, conc, tmp_path):
    d = str(tmp_path)
    p = make_pool(1, concurrency=conc)

    async def main():
        # cancel the future pool.run returned
        fut = p.run(hc.sleeper, d, "a")
        await await_marker(d, "a.started")
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await await_marker(d, "a.cancelled")

        # cancel the task that awaits it
        async def awaiter():
            return await p.run(hc.sleeper, d, "b")

        task = asyncio.create_task(awaiter())
        await await_marker(d, "b.started")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await await_marker(d, "b.cancelled")

        # a coroutine that never finishes
        task = asyncio.ensure_future(p.run(hc.forever, d, "c"))
        await await_marker(d, "c.started")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await await_marker(d, "c.cancelled")
        assert await p.run(hc.add, 1, 2) == 3  # the worker is free again

    arun(main)
    assert not {m for m in markers(d) if m.endswith(".finished")}


def test_timeout_cancels_coroutine_in_worker(make_pool, conc, tmp_path):
    d = str(tmp_path)
    p = make_pool(1, concurrency=conc)

    async def main():
        # asyncio.timeout expiring once the coroutine runs
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as cm:
                fut = p.run(hc.sleeper, d, "t")
                await await_marker(d, "t.started")
                cm.reschedule(asyncio.get_running_loop().time())
                await fut
        await await_marker(d, "t.cancelled")
        # wait_for with a deadline that passes while it sleeps
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(p.run(hc.sleeper, d, "w"), 0.5)
        await await_marker(d, "w.cancelled")
        assert await p.run(hc.add, 1, 2) == 3

    arun(main)
    assert "t.finished" not in markers(d) and "w.finished" not in markers(d)


def test_cancel_before_start_never_runs(make_pool, conc, tmp_path):
    d = str(tmp_path)
    p = make_pool(1, concurrency=conc)

    async def main():
        busy = [p.run(hc.gated, d, f"busy{i}") for i in range(conc)]
        for i in range(conc):
            await await_marker(d, f"busy{i}.started")
        victim = p.run(hc.sleeper, d, "victim", 0.0)
        victim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await victim
        after = p.run(hc.add, 1, 1)
        hc.mark(d, "gate")
        assert await asyncio.gather(*busy) == [f"busy{i}" for i in range(conc)]
        assert await after == 2  # queued behind the victim: the queue moved on

    arun(main)
    p.shutdown(wait=True)
    assert not {m for m in markers(d) if m.startswith("victim")}


def test_cancel_while_computing_lands_at_next_await(make_pool, conc, tmp_path):
    d = str(tmp_path)
    p = make_pool(1, concurrency=conc)

    async def main():
        others = [p.run(hc.gated, d, f"o{i}") for i in range(min(conc - 1, 3))]
        fut = p.run(hc.computing, d, "c")
        await await_marker(d, "c.started")
        fut.cancel()  # while it spins without awaiting
        with pytest.raises(asyncio.CancelledError):
            await fut  # the caller does not wait for the worker
        hc.mark(d, "c.go")
        await await_marker(d, "c.cancelled")  # at its next await
        assert "c.computed" in markers(d)
        hc.mark(d, "gate")
        assert await asyncio.gather(*others) == [f"o{i}" for i in range(len(others))]

    arun(main)
    p.shutdown(wait=True)
    assert "c.finished" not in markers(d) and "c.timeout" not in markers(d)


@pytest.mark.parametrize("conc_", [
    pytest.param(1),
    16,
], ids=["conc1", "conc16"])
def test_cancel_after_take_before_start(make_pool, conc_, tmp_path):
    d = str(tmp_path)
    p = make_pool(1, concurrency=conc_)

    async def main():
        # the argument's unpickling in the worker blocks until r.go
        fut = p.run(hc.sleeper_with_arg, hc.SlowArg(d, "r"), 3.0)
        await await_marker(d, "r.decoding")
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        hc.mark(d, "r.go")

    arun(main)
    p.shutdown(wait=True)  # waits for the coroutine if it (wrongly) runs on
    assert "r.finished" not in markers(d), markers(d)


def test_cancel_some_of_many_in_one_worker(make_pool, tmp_path):
    d = str(tmp_path)
    p = make_pool(1, concurrency=16)

    async def main():
        futures = [p.run(hc.forever, d, f"f{i}") for i in range(16)]
        for i in range(16):
            await await_marker(d, f"f{i}.started")
        for f in futures[::2]:
            f.cancel()
        for i in range(0, 16, 2):
            await await_marker(d, f"f{i}.cancelled")
        assert await p.run(hc.add, 1, 1) == 2  # a freed slot takes new work
        assert not any(f"f{i}.cancelled" in markers(d) for i in range(1, 16, 2))
        for f in futures[1::2]:
            f.cancel()
        for i in range(1, 16, 2):
            await await_marker(d, f"f{i}.cancelled")
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)

    arun(main)


def test_sync_future_cancel_does_not_stop_a_running_coroutine(make_pool, conc, tmp_path):
    # concurrent.futures semantics: cancel() only succeeds before the start
    d = str(tmp_path)
    p = make_pool(1, concurrency=conc)
    fut = p.submit(hc.gated, d, "g")
    wait_marker(d, "g.started")
    assert not fut.cancel()
    hc.mark(d, "gate")
    assert fut.result(TIMEOUT) == "g"


# ------------------------------------------------------------------ shutdown


def test_shutdown_cancel_futures_with_coroutines_in_flight(make_pool, conc, tmp_path):
    d = str(tmp_path)
    p = make_pool(2, concurrency=conc)
    running = 2 * conc
    futures = [p.submit(hc.forever, d, f"f{i}") for i in range(running + 3)]
    for i in range(running):
        wait_marker(d, f"f{i}.started")
    p.shutdown(wait=False, cancel_futures=True)
    done, not_done = concurrent.futures.wait(futures, timeout=TIMEOUT)
    assert not not_done  # nothing is lost
    for f in futures[:running]:
        exc = f.exception()
        assert isinstance(exc, interpool.PoolShutdownError)
        assert "shut down while this coroutine was running" in str(exc)
    for f in futures[running:]:  # never started: cancelled, as with the stdlib
        assert f.cancelled()
    p.shutdown(wait=True)
    for i in range(running):
        assert f"f{i}.cancelled" in markers(d)
    assert not any(f"f{i}.started" in markers(d) for i in range(running, running + 3))


def test_async_with_exit_after_shutdown_cancel(conc, tmp_path):
    d = str(tmp_path)
    running = 2 * conc

    async def main():
        async with interpool.Pool(2, concurrency=conc) as p:
            futures = [p.run(hc.forever, d, f"f{i}") for i in range(running + 3)]
            for i in range(running):
                await await_marker(d, f"f{i}.started")
            p.shutdown(wait=False, cancel_futures=True)
            results = await asyncio.gather(*futures, return_exceptions=True)
        return results

    results = arun(main)
    assert all(isinstance(r, interpool.PoolShutdownError) for r in results), results
    assert all("while this coroutine was running" in str(r) for r in results[:running])
    assert all("before this task started" in str(r) for r in results[running:])
    assert all(f"f{i}.cancelled" in markers(d) for i in range(running))


def test_async_with_exit_after_outer_cancel(conc, tmp_path):
    d = str(tmp_path)
    total = 2 * conc + 3

    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as cm:
                async with interpool.Pool(2, concurrency=conc) as p:

                    async def expire_when_started():
                        for i in range(2 * conc):
                            await await_marker(d, f"g{i}.started")
                        cm.reschedule(asyncio.get_running_loop().time())

                    asyncio.ensure_future(expire_when_started())
                    await asyncio.gather(*(p.run(hc.forever, d, f"g{i}") for i in range(total)))

    arun(main)  # returns: the pool's exit did not wait for `forever`
    started = {m for m in markers(d) if m.endswith(".started")}
    cancelled = {m for m in markers(d) if m.endswith(".cancelled")}
    assert len(started) == 2 * conc
    assert {m.replace("started", "cancelled") for m in started} == cancelled


def test_shutdown_wait_waits_for_running_coroutines(make_pool, conc, tmp_path):
    d = str(tmp_path)
    p = make_pool(2, concurrency=conc)
    n = 2 * conc + 2  # some still queued at shutdown: they run too
    futures = [p.submit(hc.gated, d, f"g{i}") for i in range(n)]
    for i in range(2 * conc):
        wait_marker(d, f"g{i}.started")
    stopper = threading.Thread(target=p.shutdown, kwargs={"wait": True})
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # waiting for the coroutines
    hc.mark(d, "gate")
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert [f.result(0) for f in futures] == [f"g{i}" for i in range(n)]
    assert not any(m.endswith(".cancelled") for m in markers(d))


def test_async_with_exit_waits_for_running_coroutines(conc, tmp_path):
    d = str(tmp_path)

    async def main():
        async with interpool.Pool(1, concurrency=conc) as p:
            futures = [p.run(hc.gated, d, f"g{i}") for i in range(conc + 1)]
            await await_marker(d, "g0.started")

            async def open_gate():
                await asyncio.sleep(0.1)
                hc.mark(d, "gate")

            asyncio.ensure_future(open_gate())
        return await asyncio.gather(*futures)

    assert arun(main) == [f"g{i}" for i in range(conc + 1)]


EXIT_SCRIPT = textwrap.dedent("""
    import asyncio, os, sys, time
    sys.path.insert(0, {tests!r})
    import interpool
    import helpers_coro as hc

    D, WORKERS, CONC, TOTAL, MODE = {d!r}, {workers}, {conc}, {total}, {mode!r}
    RUNNING = min(TOTAL, WORKERS * CONC)

    def started():
        return sum(hc.exists(D, f"t{{i}}.started") for i in range(TOTAL))

    async def amain(pool):
        futures = [pool.run(hc.forever, D, f"t{{i}}") for i in range(TOTAL)]
        while started() < RUNNING:
            await asyncio.sleep(0.002)
        return futures  # left pending: the loop closes, then the interpreter exits

    if __name__ == "__main__":
        pool = interpool.Pool(WORKERS, concurrency=CONC)
        if MODE == "submit":
            futures = [pool.submit(hc.forever, D, f"t{{i}}") for i in range(TOTAL)]
            while started() < RUNNING:
                time.sleep(0.002)
        else:
            futures = asyncio.run(amain(pool))
        print("exiting", flush=True)
""")


def run_exit_scripts(tmp_path, cases, timeout):
    """Run one script per case at once; return [(case, dir, rc, out, err)]."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs = []
    for n, (workers, conc, total, mode) in enumerate(cases):
        d = tmp_path / f"case{n}"
        d.mkdir()
        script = tmp_path / f"case{n}.py"
        script.write_text(EXIT_SCRIPT.format(tests=TESTS, d=str(d), workers=workers,
                                             conc=conc, total=total, mode=mode))
        proc = subprocess.Popen([sys.executable, str(script)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append((proc, str(d)))
    deadline = time.monotonic() + timeout
    out = []
    for case, (proc, d) in zip(cases, procs):
        try:
            stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            rc = "hung"
        out.append((case, d, rc, stdout, stderr))
    return out


def test_interpreter_exit_with_running_coroutines(tmp_path):
    cases = [(2, 1, 2, "submit"), (2, 1, 2, "run"), (2, 16, 32, "submit"), (2, 16, 32, "run")]
    for case, d, rc, stdout, stderr in run_exit_scripts(tmp_path, cases, TIMEOUT):
        total = case[2]
        assert rc == 0, (case, rc, stderr)
        assert stdout == "exiting\n", (case, stdout)
        assert stderr == "", (case, stderr)
        assert markers(d) == {f"t{i}.{s}" for i in range(total) for s in ("started", "cancelled")}


def test_interpreter_exit_with_queued_coroutines(tmp_path):
    cases = [(2, 1, 4, "submit"), (2, 16, 35, "run")]
    results = run_exit_scripts(tmp_path, cases, 8.0)
    for case, d, rc, stdout, stderr in results:
        assert rc == 0, (case, rc, stderr, sorted(markers(d)))
        assert stderr == "", (case, stderr)


# ------------------------------------------------------------------ bad input


def test_coroutine_object_is_refused(pool):
    async def main():
        coro = hc.add(1, 2)
        try:
            with pytest.raises(TypeError, match=r"got a coroutine object.*pool\.run\(fn, x\)"):
                pool.run(coro)
            with pytest.raises(TypeError, match="coroutine object"):
                pool.submit(coro)
            with pytest.raises(TypeError, match="coroutine object"):
                pool.map(coro, [1])
            with pytest.raises(TypeError, match="coroutine object"):
                pool.wrap(coro)
            with pytest.raises(TypeError, match="coroutine object"):
                async for _ in pool.amap(coro, [1]):
                    pass
        finally:
            coro.close()  # never awaited on purpose: no RuntimeWarning
        assert await pool.run(hc.add, 1, 2) == 3

    arun(main)


def test_async_generators_are_refused(pool):
    async def main():
        with pytest.raises(TypeError, match="async generator function 'agen'"):
            pool.run(hc.agen, 3)
        with pytest.raises(TypeError, match="async generator function"):
            pool.submit(hc.agen, 3)
        with pytest.raises(TypeError, match="async generator function"):
            list(pool.map(hc.agen, [3]))
        agen = hc.agen(3)
        with pytest.raises(TypeError, match="got a async_generator object"):
            pool.run(agen)
        with pytest.raises(TypeError, match="async_generator object"):
            pool.submit(agen)
        await agen.aclose()
        assert await pool.run(hc.add, 1, 2) == 3

    arun(main)


# ------------------------------------------------------------------ scale

N = 10_000


def test_ten_thousand_coroutines(make_pool):
    p = make_pool(2, concurrency=16)

    async def main():
        results = await asyncio.gather(*(p.run(hc.echo, i) for i in range(N)))
        assert results == list(range(N))  # every result once, in place
        assert [x async for x in p.amap(hc.echo, range(N), window=256)] == list(range(N))
        unordered = [x async for x in p.amap(hc.echo, range(N), ordered=False, window=256)]
        assert sorted(unordered) == list(range(N))

    arun(main)
    assert list(p.map(hc.echo, range(N))) == list(range(N))
    assert list(p.map(hc.echo, range(N), chunksize=64)) == list(range(N))
    futures = [p.submit(hc.echo, i) for i in range(N)]
    assert [f.result(TIMEOUT) for f in futures] == list(range(N))
