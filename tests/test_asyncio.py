"""interpool's asyncio API: Pool.run/wrap/amap/as_completed/ashutdown,
``async with``, cancellation, several loops, uvloop, and Runner.

Behaviour only, never timings: where a test needs a task to be running (or
still queued) it coordinates with the task through files in tmp_path.  No
pytest-asyncio: each test drives its coroutine with asyncio.run (through
``run_with``, which also picks asyncio's or uvloop's event loop).
"""

import asyncio
import contextlib
import functools
import gc
import inspect
import os
import threading

import pytest

import helpers_async_tasks as ha
import helpers_byvalue as hb
import interpool
from helpers_util import assert_back_to, counts
from helpers_async_util import (  # noqa: F401 (kind: a fixture)
    await_path,
    counting_loop_factory,
    kind,
    loop_factory,
    open_fds,
    run_with,
    settle,
)

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pool():
    """A shared 2-worker pool for tests that never block its workers."""
    p = interpool.Pool(2, name="asyncio-test-pool")
    assert p.wait_ready(60)
    yield p
    p.shutdown()


def boom_line():
    """The line number of the `raise` in helpers_async_tasks.boom."""
    lines, first = inspect.getsourcelines(ha.boom)
    for offset, line in enumerate(lines):
        if "BOOM-LINE" in line:
            return first + offset
    raise AssertionError("marker line not found")


# ------------------------------------------------------------------ run


def test_run_returns_results(pool, kind):
    async def main():
        assert await pool.run(ha.ident, 41) == 41
        assert await pool.run(ha.add, 1, 2, c=3) == 6
        assert await pool.run(ha.add, a=1, b=2) == 3
        assert await pool.run(ha.ident, {"k": [1, (2, 3)]}) == {"k": [1, (2, 3)]}
        assert await pool.run(ha.ident, None) is None
        # builtins and classes travel by reference too
        assert await pool.run(sorted, [3, 1, 2]) == [1, 2, 3]
        # a run is queued at once, like loop.run_in_executor
        fut = pool.run(ha.square, 9)
        assert isinstance(fut, asyncio.Future)
        assert await fut == 81

    run_with(kind, main)


def test_run_runs_in_a_worker_interpreter(pool, kind):
    async def main():
        ids = await asyncio.gather(*[pool.run(ha.interp_id) for _ in range(20)])
        assert 0 not in ids
        return ids

    run_with(kind, main)


def test_run_exception_keeps_type_message_and_remote_traceback(pool, kind):
    async def main():
        with pytest.raises(ha.AsyncTaskError, match="^kaput$") as info:
            await pool.run(ha.boom, "kaput")
        cause = info.value.__cause__
        assert isinstance(cause, interpool.RemoteTraceback)
        assert "in boom" in cause.text
        assert f"line {boom_line()}, in boom" in cause.text
        assert "kaput" in cause.text
        # the builtin exception types too
        with pytest.raises(ZeroDivisionError):
            await pool.run(divmod, 1, 0)

    run_with(kind, main)


def test_run_exception_with_another_init_signature_is_rebuilt(pool):
    # Issue 12 changed this: NeedsTwoArgs (pickles, but its __init__ wants
    # other arguments) and HoldsLock (holds a lock) arrived as RemoteError.
    async def main():
        with pytest.raises(ha.NeedsTwoArgs) as info:
            await pool.run(ha.raise_needs_two_args, 7, "detail")
        err = info.value
        assert (err.code, err.detail, str(err)) == (7, "detail", "code 7: detail")
        assert isinstance(err.__cause__, interpool.RemoteTraceback)
        assert "raise_needs_two_args" in err.__cause__.text
        with pytest.raises(ha.HoldsLock) as info:
            await pool.run(ha.raise_holds_lock, "locked up")
        assert str(info.value) == "locked up" and not hasattr(info.value, "lock")

    run_with("asyncio", main)


def test_run_refuses_unsendable_callables_at_the_call(pool):
    # Issue 12 changed this: lambdas and nested functions used to be refused
    # here; they travel by value now, and (issue 19) so do local classes.  A
    # closure that assigns to what it captures cannot travel.
    class Local:
        pass

    async def main():
        with pytest.raises(TypeError, match="nonlocal"):
            pool.run(hb.make_nonlocal_writer())
        assert type(await pool.run(Local)) is Local

        def nested():
            return 1

        assert await pool.run(lambda: 1) == 1
        assert await pool.run(nested) == 1
        assert await pool.run(ha.ident, "still fine") == "still fine"

    run_with("asyncio", main)


def test_run_needs_a_running_loop(pool):
    with pytest.raises(RuntimeError):
        pool.run(ha.ident, 1)


def test_run_unsendable_argument_fails_at_the_call(pool):
    async def main():
        with pytest.raises(TypeError, match="cannot send"):
            pool.run(ha.ident, threading.Lock())
        # an unsendable result fails only its own await
        with pytest.raises(TypeError, match="cannot send"):
            await pool.run(ha.return_lock)
        assert await pool.run(ha.ident, "fine") == "fine"

    asyncio.run(main())


def test_run_stop_iteration_and_system_exit(pool):
    async def main():
        # an asyncio future cannot hold StopIteration: it becomes a RuntimeError
        with pytest.raises(RuntimeError, match="StopIteration") as info:
            await pool.run(ha.raise_stop_iteration, 5)
        assert isinstance(info.value.__cause__, StopIteration)
        with pytest.raises(SystemExit) as info:
            await pool.run(ha.raise_system_exit, 3)
        assert info.value.code == 3
        assert await pool.run(ha.ident, "alive") == "alive"

    asyncio.run(main())


def test_gather_many(pool, kind):
    async def main():
        return await asyncio.gather(*[pool.run(ha.square, i) for i in range(500)])

    assert run_with(kind, main) == [i * i for i in range(500)]


def test_fifty_thousand_concurrent_awaits(pool, kind):
    n = 50_000

    async def main():
        futures = [pool.run(ha.ident, i) for i in range(n)]
        results = await asyncio.gather(*futures)
        assert all(f.done() and not f.cancelled() for f in futures)
        return results

    results = run_with(kind, main)
    assert len(results) == n
    assert results == list(range(n))


# ------------------------------------------------------------------ wrap


def test_wrap_returns_an_async_function(pool, kind):
    wrapped = pool.wrap(ha.square)
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "square"
    assert wrapped.__qualname__ == "square"
    assert wrapped.__wrapped__ is ha.square
    kw = pool.wrap(ha.add)

    async def main():
        assert await wrapped(12) == 144
        assert await kw(1, b=2, c=3) == 6
        return await asyncio.gather(*[wrapped(i) for i in range(10)])

    assert run_with(kind, main) == [i * i for i in range(10)]


def test_wrap_refuses_unsendable_callables_immediately(pool):
    # no event loop needed: the check happens in wrap(), not at the first await.
    # Issue 12 changed this: lambdas and nested functions used to be refused;
    # issue 19: local classes too.
    with pytest.raises(TypeError, match="nonlocal"):
        pool.wrap(hb.make_nonlocal_writer())

    def nested(x):
        return x

    async def main():
        return await pool.wrap(lambda x: x + 1)(1), await pool.wrap(nested)(2)

    assert asyncio.run(main()) == (2, 2)


# ------------------------------------------------------------------ async with


def test_async_with_pool(kind):
    async def main():
        async with interpool.Pool(2) as pool:
            assert isinstance(pool, interpool.Pool)
            assert await pool.run(ha.add, 2, 3) == 5
        with pytest.raises(RuntimeError):
            pool.run(ha.ident, 1)
        assert "shut down" in repr(pool)

    run_with(kind, main)


def test_async_with_exit_does_not_block_the_loop(tmp_path, kind):
    """__aexit__ waits for a running task, and the loop keeps running other
    tasks meanwhile: here another task is what releases the running one."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    events = []

    async def releaser(exiting, fut):
        await exiting.wait()
        for _ in range(5):
            await asyncio.sleep(0)
        events.append(("releasing", fut.done()))
        ha.touch(release)

    async def main():
        exiting = asyncio.Event()
        async with interpool.Pool(2) as pool:
            fut = pool.run(ha.block, started, release, "finished")
            await await_path(started)
            helper = asyncio.create_task(releaser(exiting, fut))
            exiting.set()
            # leaving the block: __aexit__ waits for the running task
        events.append("exited")
        await helper
        # the task was still running when the other task released it
        assert events == [("releasing", False), "exited"]
        assert await fut == "finished"

    run_with(kind, main)


def test_shutdown_releases_the_loop_reader_and_fd():
    """Pools created and shut down inside one long-running loop leave no
    eventfd open and no reader registered with the loop.

    Regression: shutdown() used to release only closed loops' sinks, so each
    pool leaked one eventfd and one loop reader until the loop closed."""
    selectors = []

    async def main():
        async with interpool.Pool(1) as warmup:  # imports, lazily created objects
            await warmup.run(ha.ident, 0)
        del warmup
        gc.collect()
        fds, readers = open_fds(), len(selectors[0].get_map())
        for i in range(10):
            async with interpool.Pool(1) as pool:
                assert await pool.run(ha.ident, i) == i
            del pool
        gc.collect()
        return (fds, readers), (open_fds(), len(selectors[0].get_map()))

    before, after = asyncio.run(main(), loop_factory=counting_loop_factory(selectors))
    assert after[1] <= before[1], f"loop readers: {before[1]} -> {after[1]}"
    assert after[0] <= before[0] + 2, f"open fds: {before[0]} -> {after[0]}"


def test_ashutdown_cancel_futures(tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")

    async def main():
        pool = interpool.Pool(1)
        running = pool.run(ha.block, started, release, "ran")
        await await_path(started)
        queued = [pool.run(ha.touch, str(tmp_path / f"q{i}"), i) for i in range(3)]
        shutdown = asyncio.create_task(pool.ashutdown(cancel_futures=True))
        # the queued ones fail as soon as they are dropped, before the join
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert not shutdown.done()
        ha.touch(release)
        await shutdown
        assert await running == "ran"
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, interpool.PoolShutdownError) for r in results), results
    assert not any((tmp_path / f"q{i}").exists() for i in range(3))


# ------------------------------------------------------------------ amap


def test_amap_ordered_sync_iterable(pool, kind):
    async def main():
        return [r async for r in pool.amap(ha.square, range(100))]

    assert run_with(kind, main) == [i * i for i in range(100)]


def test_amap_ordered_async_generator(pool, kind):
    async def source():
        for i in range(60):
            await asyncio.sleep(0)
            yield i

    async def main():
        return [r async for r in pool.amap(ha.square, source(), window=5)]

    assert run_with(kind, main) == [i * i for i in range(60)]


@pytest.mark.parametrize("ordered", [True, False])
def test_amap_yields_results_while_an_async_source_idles(pool, kind, ordered):
    """A source that yields a few items and then waits (a socket with no
    new message): their results come while it waits."""
    async def main():
        more = asyncio.Event()

        async def source():
            for i in range(3):
                yield i
            await more.wait()   # only the consumer ends this wait
            yield 3

        got = []
        async for r in pool.amap(ha.square, source(), ordered=ordered):
            got.append(r)
            if len(got) == 3:
                more.set()
        return got

    got = run_with(kind, main)
    assert (got if ordered else sorted(got)) == [0, 1, 4, 9]


def test_amap_leaving_early_while_the_source_waits(pool, kind):
    async def main():
        closed = asyncio.Event()

        async def source():
            try:
                yield 1
                await asyncio.Event().wait()   # forever
            finally:
                closed.set()

        async for r in pool.amap(ha.square, source()):
            assert r == 1
            break
        await asyncio.wait_for(closed.wait(), 30)
        return await pool.run(ha.square, 5)

    assert run_with(kind, main) == 25


def test_amap_empty_iterables(pool):
    async def empty():
        return
        yield

    async def main():
        assert [r async for r in pool.amap(ha.square, [])] == []
        assert [r async for r in pool.amap(ha.square, empty())] == []

    asyncio.run(main())


def test_amap_unordered_yields_every_result(pool, kind):
    async def source():
        for i in range(50, 100):
            yield i

    async def main():
        a = [r async for r in pool.amap(ha.square, range(50), ordered=False)]
        b = [r async for r in pool.amap(ha.square, source(), ordered=False, window=4)]
        return a, b

    a, b = run_with(kind, main)
    assert len(a) == 50 and set(a) == {i * i for i in range(50)}
    assert len(b) == 50 and set(b) == {i * i for i in range(50, 100)}


def test_amap_reads_a_sync_source_a_quarter_window_at_a_time(tmp_path):
    # One submit per few results, not one per result: the window (8) is
    # refilled once a quarter of it is free.  Task i finishes only once the
    # consumer has seen result i - 1, so results come one per wake-up and
    # the reads are exact.
    pulled = []

    def source():
        for i in range(24):
            pulled.append(i)
            yield str(tmp_path / str(i)), i

    async def main(pool):
        seen = []
        ha.touch(str(tmp_path / "0"))
        async for r in pool.amap(lambda a: ha.square_when(*a), source(), window=8):
            seen.append((r, len(pulled)))
            ha.touch(str(tmp_path / str(len(seen))))   # lets the next task finish
        return seen

    with interpool.Pool(2) as pool:
        seen = asyncio.run(main(pool))
    assert [r for r, _ in seen] == [i * i for i in range(24)]
    assert [n for _, n in seen] == [8, 8, 10, 10, 12, 12, 14, 14, 16, 16, 18, 18,
                                    20, 20, 22, 22] + [24] * 8


@pytest.mark.parametrize("workers, concurrency", [(2, 1), (1, 8)])
def test_amap_tops_up_the_window_before_a_worker_would_idle(tmp_path, workers, concurrency):
    # Reading a quarter window at a time must not starve: here the awaited
    # task (item 1) finishes only once item 8 has run, so item 8 must be
    # sent while the consumer waits, though only one slot is free (also
    # with one worker running up to 8 coroutines).
    go, eight = str(tmp_path / "go"), str(tmp_path / "8")

    def items():
        for i in range(10):
            if i == 1:
                yield eight, i, None, 10.0   # (fails after 10 s if item 8 never runs)
            else:
                yield go, i, eight if i == 8 else None

    if concurrency == 1:
        def fn(a):
            return ha.square_when(*a)
    else:
        async def fn(a):
            return await ha.asquare_when(*a)

    async def main(pool):
        ha.touch(go)
        return [r async for r in pool.amap(fn, items(), window=8)]

    with interpool.Pool(workers, concurrency=concurrency) as pool:
        assert asyncio.run(main(pool)) == [i * i for i in range(10)]


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("source_kind", ["sync", "async"])
def test_amap_backpressure(pool, ordered, source_kind):
    window, n = 3, 40
    pulled = []

    def sync_source():
        for i in range(n):
            pulled.append(i)
            yield i

    async def async_source():
        for i in range(n):
            pulled.append(i)
            await asyncio.sleep(0)
            yield i

    async def main():
        source = sync_source() if source_kind == "sync" else async_source()
        consumed = []
        async for r in pool.amap(ha.square, source, ordered=ordered, window=window):
            consumed.append(r)
            assert len(pulled) <= len(consumed) + window, (len(pulled), len(consumed))
            await asyncio.sleep(0)  # give the pool time to run ahead, if it would
        return consumed

    consumed = asyncio.run(main())
    assert len(consumed) == n and len(pulled) == n
    if ordered:
        assert consumed == [i * i for i in range(n)]
    else:
        assert sorted(consumed) == [i * i for i in range(n)]


def test_amap_exception_raised_at_its_item(pool, kind):
    async def main():
        got = []
        with pytest.raises(ha.AsyncTaskError, match="bad item 5") as info:
            async for r in pool.amap(functools.partial(ha.fail_on, bad=5), range(10)):
                got.append(r)
        assert isinstance(info.value.__cause__, interpool.RemoteTraceback)
        return got

    assert run_with(kind, main) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("how", ["break", "aclosing"])
def test_amap_early_exit_cancels_queued_and_stops_running_tasks(tmp_path, kind, how):
    """Item 0 returns at once, items 1.. wait for `release`: once the first
    result is in and items 1 and 2 have started, the two workers hold them
    and everything else is still queued.  Leaving the loop drops the queued
    ones (they never run, even once the pool drains its queue) and stops the
    two running ones (TaskInterrupted in them)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    release = str(tmp_path / "release")
    fn = functools.partial(ha.mark_stoppable, str(marks), release=release)

    baseline = counts()

    async def both(prefix):
        await await_path(str(marks / f"{prefix}-1"))
        await await_path(str(marks / f"{prefix}-2"))

    async def main():
        pool = interpool.Pool(2)
        got = []
        if how == "break":
            async for r in pool.amap(fn, range(12), window=12):
                got.append(r)
                await both("started")
                break
            await settle()  # the abandoned generator's aclose() runs
        else:
            async with contextlib.aclosing(pool.amap(fn, range(12), window=12)) as results:
                async for r in results:
                    got.append(r)
                    await both("started")
                    break
        await both("stopped")
        ha.touch(release)
        await pool.ashutdown()  # without cancel_futures: runs whatever is still queued
        return got

    assert run_with(kind, main) == [0]
    ran = sorted(name for name in os.listdir(marks) if name.startswith("ran-"))
    assert ran == ["ran-0"]
    assert_back_to(baseline)


@pytest.mark.parametrize(
    "window, exc_type", [(0, ValueError), (-1, ValueError), ("x", TypeError), (1.5, TypeError)]
)
def test_amap_window_validation(pool, window, exc_type):
    async def main():
        with pytest.raises(exc_type, match="window"):
            async for _ in pool.amap(ha.square, range(3), window=window):
                pass
        # window=1 is the smallest valid one
        return [r async for r in pool.amap(ha.square, range(3), window=1)]

    assert asyncio.run(main()) == [0, 1, 4]


def test_amap_of_a_lambda(pool):
    # Issue 12 changed this: amap used to refuse lambdas.
    async def main():
        return [x async for x in pool.amap(lambda x: x * 3, range(3))]

    assert asyncio.run(main()) == [0, 3, 6]


def test_amap_does_not_spin_the_loop_while_the_consumer_is_busy(tmp_path):
    """Item 1 finishes while the loop body sleeps: the loop should then poll
    its selector a handful of times during that sleep, not continuously.

    Regression: amap's add_reader callback used to leave the eventfd unread,
    so the loop spun (~100,000 selects in 0.2 s) until the next drain()."""
    marks = tmp_path / "marks"
    marks.mkdir()
    release = str(tmp_path / "release")
    fn = functools.partial(ha.mark, str(marks), release=release)
    selectors = []

    async def main():
        pool = interpool.Pool(2)
        polls = []
        try:
            async for item in pool.amap(fn, range(2), window=2):
                if item == 0:
                    ha.touch(release)
                    await await_path(str(marks / "ran-1"))  # item 1's result is on its way
                    await asyncio.sleep(0.01)
                    before = selectors[0].selects
                    await asyncio.sleep(0.2)
                    polls.append(selectors[0].selects - before)
        finally:
            ha.touch(release)
            await pool.ashutdown()
        return polls

    polls = asyncio.run(main(), loop_factory=counting_loop_factory(selectors))
    assert polls[0] < 100, f"the loop polled its selector {polls[0]} times during a 0.2 s sleep"


# ------------------------------------------------------------------ as_completed


def test_as_completed_mixes_futures_and_calls(pool, kind):
    async def main():
        futures = [pool.run(ha.square, i) for i in range(5)]
        coro = pool.wrap(ha.square)(7)
        items = [*futures, (ha.square, 10), (ha.add, 1, 2), coro]
        seen, results = [], []
        async for fut in pool.as_completed(items):
            assert fut.done()
            seen.append(fut)
            results.append(fut.result())
        return futures, seen, results

    futures, seen, results = run_with(kind, main)
    assert len(seen) == 8
    assert len({id(f) for f in seen}) == 8  # each one exactly once
    assert all(any(f is s for s in seen) for f in futures)
    assert sorted(results) == sorted([0, 1, 4, 9, 16, 100, 3, 49])


def test_as_completed_yields_failures_too(pool):
    async def main():
        items = [(ha.ident, 1), (ha.boom, "nope")]
        outcomes = []
        async for fut in pool.as_completed(items):
            try:
                outcomes.append(await fut)
            except ha.AsyncTaskError as exc:
                outcomes.append(str(exc))
        return sorted(map(str, outcomes))

    assert asyncio.run(main()) == ["1", "nope"]


@pytest.mark.parametrize("bad", [(), (1, 2), ("not callable",)])
def test_as_completed_bad_tuple(pool, bad):
    async def main():
        with pytest.raises(TypeError):
            async for _ in pool.as_completed([bad]):
                pass

    asyncio.run(main())


# ------------------------------------------------------------------ cancellation


@pytest.mark.parametrize("how", ["future.cancel", "task.cancel", "timeout", "wait_for"])
def test_cancelled_queued_task_never_runs(tmp_path, kind, how):
    release = str(tmp_path / "release")
    marker = tmp_path / "marker"

    async def main():
        pool = interpool.Pool(2)
        started = [str(tmp_path / f"started{i}") for i in range(2)]
        blockers = [pool.run(ha.block, s, release, i) for i, s in enumerate(started)]
        for s in started:
            await await_path(s)
        fut = pool.run(ha.touch, str(marker), "ran")  # queued behind busy workers
        if how == "future.cancel":
            assert fut.cancel()
        elif how == "task.cancel":

            async def awaiter():
                return await fut

            task = asyncio.create_task(awaiter())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        elif how == "timeout":
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await fut
        else:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(fut, 0.05)
        assert fut.cancelled()
        ha.touch(release)
        assert await asyncio.gather(*blockers) == [0, 1]
        assert await pool.run(ha.ident, "after") == "after"
        await pool.ashutdown()  # runs anything still queued

    run_with(kind, main)
    assert not marker.exists()


def test_cancel_await_while_task_runs(tmp_path, kind):
    """Cancelling the await of a running sync task stops it in its worker
    (TaskInterrupted at its next bytecode): the only worker answers the
    next task without the first ever being released."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    done = str(tmp_path / "done")

    async def main():
        pool = interpool.Pool(1)
        fut = pool.run(ha.block, started, release, "discarded", done)

        async def awaiter():
            return await fut

        task = asyncio.create_task(awaiter())
        await await_path(started)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fut.cancelled()
        # the stopped task's result (TaskInterrupted) does not confuse the next run
        assert await pool.run(ha.ident, "next") == "next"
        assert await asyncio.gather(*[pool.run(ha.square, i) for i in range(20)]) == [
            i * i for i in range(20)
        ]
        ha.touch(release)
        await pool.ashutdown()

    run_with(kind, main)
    assert not os.path.exists(done)


def test_cancel_storm(kind):
    """Cancel every third of many queued runs: the others all deliver their
    own result, the cancelled ones stay cancelled, nothing leaks."""
    baseline = counts()

    async def main():
        pool = interpool.Pool(2)
        futures = [pool.run(ha.ident, i) for i in range(6000)]
        for i, fut in enumerate(futures):
            if i % 3 == 0:
                fut.cancel()
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert await pool.run(ha.ident, "after") == "after"
        await pool.ashutdown()
        return results

    results = run_with(kind, main)
    for i, r in enumerate(results):
        if i % 3 == 0:
            assert isinstance(r, asyncio.CancelledError)
        else:
            assert r == i
    assert_back_to(baseline)


@pytest.mark.parametrize("how", ["timeout", "wait_for"])
def test_timeout_around_running_task(tmp_path, kind, how):
    """asyncio.timeout(0.05) / wait_for(..., 0.05) around a task that runs
    longer (it waits for `release`, which never comes): the awaiter gets
    TimeoutError and the task is stopped in its worker, so the only worker
    answers the next task."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    done = str(tmp_path / "done")

    async def main():
        pool = interpool.Pool(1)
        fut = pool.run(ha.block, started, release, "late", done)
        await await_path(started)  # running, not queued
        with pytest.raises(TimeoutError):
            if how == "timeout":
                async with asyncio.timeout(0.05):
                    await fut
            else:
                await asyncio.wait_for(fut, 0.05)
        assert fut.cancelled()
        assert await pool.run(ha.ident, "ok") == "ok"
        await pool.ashutdown()

    run_with(kind, main)
    assert not os.path.exists(done)


def test_timeout_around_sleeping_task(kind):
    async def main():
        pool = interpool.Pool(1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pool.run(ha.sleep_return, 0.5, "late")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(ha.sleep_return, 0.5, "late"), 0.05)
        assert await pool.run(ha.ident, "ok") == "ok"
        await pool.ashutdown()

    run_with(kind, main)


def test_asyncio_run_cancels_a_pending_await(tmp_path):
    """asyncio.run returning while a task still awaits pool.run: the task is
    cancelled at teardown; nothing hangs, nothing warns."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    pool = interpool.Pool(1)
    holder = {}

    async def background():
        return await pool.run(ha.block, started, release, "x")

    async def main():
        holder["task"] = asyncio.create_task(background())
        await await_path(started)

    asyncio.run(main())
    assert holder["task"].cancelled()
    ha.touch(release)

    async def again():
        return await pool.run(ha.ident, "again")

    assert asyncio.run(again()) == "again"
    pool.shutdown()


# ------------------------------------------------------------------ shutdown


def test_shutdown_with_pending_awaits(tmp_path, kind):
    release = str(tmp_path / "release")

    async def main():
        pool = interpool.Pool(2)
        started = [str(tmp_path / f"started{i}") for i in range(2)]
        running = [pool.run(ha.block, s, release, f"r{i}") for i, s in enumerate(started)]
        for s in started:
            await await_path(s)
        queued = [pool.run(ha.touch, str(tmp_path / f"q{i}"), i) for i in range(6)]
        pool.shutdown(wait=False, cancel_futures=True)
        with pytest.raises(RuntimeError, match="shutdown"):
            pool.run(ha.ident, 1)
        with pytest.raises(RuntimeError):
            await pool.wrap(ha.ident)(1)
        queued_results = await asyncio.gather(*queued, return_exceptions=True)
        ha.touch(release)
        running_results = await asyncio.gather(*running, return_exceptions=True)
        await pool.ashutdown()
        return queued_results, running_results

    queued_results, running_results = run_with(kind, main)
    assert running_results == ["r0", "r1"]
    for r in queued_results:
        assert isinstance(r, interpool.PoolShutdownError)
        assert isinstance(r, RuntimeError)
    assert not any((tmp_path / f"q{i}").exists() for i in range(6))


def test_shutdown_without_cancel_finishes_pending_awaits(tmp_path):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")

    async def main():
        pool = interpool.Pool(1)
        running = pool.run(ha.block, started, release, "first")
        await await_path(started)
        queued = [pool.run(ha.square, i) for i in range(5)]
        pool.shutdown(wait=False)
        ha.touch(release)
        return await running, await asyncio.gather(*queued)

    assert asyncio.run(main()) == ("first", [0, 1, 4, 9, 16])


# ------------------------------------------------------------------ loops


def test_two_loops_in_two_threads_share_a_pool(pool):
    results, errors = {}, []

    def thread_main(offset):
        async def main():
            wrapped = pool.wrap(ha.add)
            runs = [pool.run(ha.add, i, offset) for i in range(300)]
            wraps = [wrapped(i, b=offset) for i in range(300, 400)]
            amapped = [r async for r in pool.amap(ha.square, range(offset, offset + 50))]
            return await asyncio.gather(*runs, *wraps), amapped

        try:
            results[offset] = asyncio.run(main())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(off,)) for off in (1000, 2000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    for offset in (1000, 2000):
        gathered, amapped = results[offset]
        assert gathered == [i + offset for i in range(400)]
        assert amapped == [i * i for i in range(offset, offset + 50)]


def test_consecutive_asyncio_runs_share_a_pool(pool, kind):
    async def main(i):
        return await asyncio.gather(*[pool.run(ha.add, i, j) for j in range(50)])

    for i in range(5):
        assert run_with(kind, main, i) == [i + j for j in range(50)]


@pytest.mark.parametrize("state", ["running", "finished", "cancelled"])
def test_loop_closed_with_work_in_flight(tmp_path, kind, state):
    """A loop closes while its pool.run future is pending (its task still
    running, or finished but never resolved by the loop, or the future
    cancelled first).  The same pool then works from a new asyncio.run, and
    the old future is done by then, not pending forever."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    done = str(tmp_path / "done")
    pool = interpool.Pool(1)
    factory = loop_factory(kind) or asyncio.new_event_loop
    loop = factory()

    async def start():
        fut = pool.run(ha.block, started, release, "old", done)
        await await_path(started)
        return fut

    try:
        old = loop.run_until_complete(start())
        assert not old.done()
        if state == "cancelled":
            old.cancel()
            loop.run_until_complete(asyncio.sleep(0))
        elif state == "finished":
            ha.touch(release)
            assert ha.wait_for_path(done)  # its result waits for a loop that will not come
    finally:
        loop.close()
        ha.touch(release)

    async def main():
        return await pool.run(ha.ident, "new")

    assert run_with(kind, main) == "new"
    assert old.done()
    if state == "cancelled":
        assert old.cancelled()
    else:
        assert isinstance(old.exception(), interpool.PoolShutdownError)
    pool.shutdown()


def test_loop_closed_with_sleeping_task(kind):
    pool = interpool.Pool(1)
    factory = loop_factory(kind) or asyncio.new_event_loop
    loop = factory()

    async def start():
        return pool.run(ha.sleep_return, 0.3, "old")

    try:
        old = loop.run_until_complete(start())
    finally:
        loop.close()

    async def main():
        return await pool.run(ha.ident, "new")

    assert run_with(kind, main) == "new"
    assert old.done()
    if not old.cancelled():
        assert isinstance(old.exception(), interpool.PoolShutdownError)
    pool.shutdown()


def test_loop_closed_before_shutdown_wait(kind):
    """shutdown(wait=True) also releases a closed loop's futures."""
    pool = interpool.Pool(1)
    factory = loop_factory(kind) or asyncio.new_event_loop
    loop = factory()

    async def start():
        return pool.run(ha.sleep_return, 0.2, "old")

    try:
        old = loop.run_until_complete(start())
    finally:
        loop.close()
    pool.shutdown(wait=True)
    assert old.done()
    assert isinstance(old.exception(), interpool.PoolShutdownError)


# ------------------------------------------------------------------ Runner


def test_runner_start_then_run_and_wrap(kind):
    with interpool.Runner(workers=2).start() as runner:
        assert isinstance(runner, interpool.Runner)
        assert runner.pool.workers == 2

        async def main():
            a = await runner.run(ha.add, 1, 2, c=3)
            square = runner.wrap(ha.square)
            assert inspect.iscoroutinefunction(square)
            b = await asyncio.gather(*[square(i) for i in range(10)])
            ids = await asyncio.gather(*[runner.run(ha.interp_id) for _ in range(10)])
            return a, b, ids

        a, b, ids = run_with(kind, main)
        assert a == 6
        assert b == [i * i for i in range(10)]
        assert 0 not in ids
    assert "shut down" in repr(runner.pool)


def test_runner_with_statement_starts_it():
    with interpool.Runner(workers=1) as runner:

        async def main():
            return await runner.run(ha.ident, "x")

        assert asyncio.run(main()) == "x"


def test_runner_run_before_start_raises():
    runner = interpool.Runner(workers=2)
    with pytest.raises(RuntimeError, match="start"):
        runner.run(ha.ident, 1)
    with pytest.raises(RuntimeError, match="start"):
        runner.wrap(ha.ident)
    with pytest.raises(RuntimeError):
        runner.pool

    async def main():
        with pytest.raises(RuntimeError, match="start"):
            runner.run(ha.ident, 1)

    asyncio.run(main())


def test_runner_async_with(kind):
    async def main():
        async with interpool.Runner(workers=2) as r:
            assert await r.run(ha.square, 5) == 25
            assert await r.wrap(ha.add)(1, b=1) == 2
        with pytest.raises(RuntimeError):
            r.run(ha.ident, 1)

    run_with(kind, main)


def test_runner_failing_initializer():
    runner = interpool.Runner(workers=1, initializer=ha.failing_init, initargs=("no",))
    with pytest.raises(interpool.BrokenPool):
        runner.start()

    async def main():
        with pytest.raises(interpool.BrokenPool):
            async with interpool.Runner(workers=1, initializer=ha.failing_init, initargs=("no",)):
                pass

    asyncio.run(main())


def test_ashutdown_twice_and_inside_async_with():
    async def main():
        async with interpool.Pool(1) as pool:
            fut = pool.run(ha.sleep_return, 0.05, "done")
            await asyncio.gather(pool.ashutdown(), pool.ashutdown())
            assert await fut == "done"
            with pytest.raises(RuntimeError):
                pool.run(ha.ident, 1)
        await pool.ashutdown()

    asyncio.run(main())


def test_runner_initializer():
    with interpool.Runner(workers=2, initializer=ha.counting_init, initargs=("w",)).start() as r:

        async def main():
            return await asyncio.gather(*[r.run(ha.init_report, i) for i in range(6)])

        for interp, _thread, calls, threads, x in asyncio.run(main()):
            assert interp != 0
            assert calls == 1
            assert [tag for tag, _ in threads] == ["w"]


def test_runner_start_again_after_the_block_closed():
    """Each `with runner.start():` starts fresh workers, as the seed
    design's Runner (issue 21); a wrapped function works in the next block."""
    runner = interpool.Runner(workers=1)
    pools, ids = [], []
    square = None
    for _ in range(3):
        with runner.start() as started:
            assert started is runner
            square = square or runner.wrap(ha.square)

            async def main():
                return await runner.run(ha.interp_id), await square(4)

            interp, squared = asyncio.run(main())
            ids.append(interp)
            assert squared == 16
            pools.append(runner.pool)
        with pytest.raises(RuntimeError, match="not started"):
            runner.run(ha.ident, 1)
    assert len(set(map(id, pools))) == 3
    assert all("shut down" in repr(pool) for pool in pools)
    assert len(set(ids)) == 3   # a fresh interpreter each time


def test_runner_async_with_again():
    runner = interpool.Runner(workers=1)

    async def main():
        for i in range(2):
            async with runner as r:
                assert await r.run(ha.square, i) == i * i

    asyncio.run(main())


def test_runner_takes_the_pool_options():
    runner = interpool.Runner(max_workers=2, concurrency=4, task_timeout=30,
                              max_tasks_per_worker=100, name="seed-runner")
    with runner.start():
        assert runner.pool.workers == 2
        assert runner.pool.concurrency == 4
        assert runner.pool.name == "seed-runner"

        import helpers_coro as hcoro

        async def main():   # async def tasks, 4 at a time on each worker's loop
            return await asyncio.gather(*(runner.run(hcoro.add, i, i, delay=0.01) for i in range(8)))

        assert asyncio.run(main()) == [2 * i for i in range(8)]


def test_runner_bad_option_fails_at_start():
    runner = interpool.Runner(concurrency=0)
    with pytest.raises(ValueError, match="concurrency"):
        runner.start()
    with pytest.raises(TypeError):
        interpool.Runner(concurency=2)   # a misspelt option, at the call
