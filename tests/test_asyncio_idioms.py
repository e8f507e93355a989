"""pool.run(...) in every asyncio idiom, and in anyio.

``pool.run()`` returns an asyncio future that is also a coroutine
(AsyncTaskFuture): ``await``, ``gather``, ``wait_for``, ``shield`` and
``ensure_future`` take it as the future it is (no Task around it), while
``asyncio.create_task``, ``TaskGroup.create_task`` and anyio's
``start_soon`` take it as a coroutine.  Either way the task was queued when
run() was called, and cancelling whatever awaits it removes it from the
queue or stops it where it runs.

Behaviour only, never timings: tasks that must be running (or queued)
coordinate with the test through files in tmp_path.
"""

import asyncio
import collections.abc
import os

import pytest

import helpers_async_tasks as ha
import interpool
from helpers_async_util import await_path, kind, loop_factory, run_with  # noqa: F401 (kind: a fixture)


@pytest.fixture(scope="module")
def pool():
    """A shared 2-worker pool for tests that never block its workers."""
    p = interpool.Pool(2, name="asyncio-idioms-pool")
    assert p.wait_ready(60)
    yield p
    p.shutdown()


def import_anyio():
    return pytest.importorskip("anyio", reason="anyio is not installed")


# ------------------------------------------------------------ the object


def test_run_returns_a_future_that_is_also_a_coroutine(pool, kind):
    async def main():
        fut = pool.run(ha.square, 3)
        assert isinstance(fut, asyncio.Future)
        assert isinstance(fut, collections.abc.Coroutine)
        assert asyncio.iscoroutine(fut) and asyncio.isfuture(fut)
        assert asyncio.ensure_future(fut) is fut  # no Task around it
        assert await fut == 9
        # the coroutine protocol on a finished task: its result, as a return
        with pytest.raises(StopIteration) as info:
            fut.send(None)
        assert info.value.value == 9
        failed = pool.run(ha.boom, "kaput")
        with pytest.raises(ha.AsyncTaskError):
            await failed
        with pytest.raises(ha.AsyncTaskError, match="kaput"):
            failed.send(None)

    run_with(kind, main)


def test_gather_takes_the_futures_without_tasks(pool, kind):
    async def main():
        futures = [pool.run(ha.square, i) for i in range(200)]
        gathered = asyncio.gather(*futures, pool.run(ha.boom, "x"), return_exceptions=True)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        results = await gathered
        assert results[:200] == [i * i for i in range(200)]
        assert isinstance(results[200], ha.AsyncTaskError)

    run_with(kind, main)


# ------------------------------------------------------------ create_task, TaskGroup


def test_create_task(pool, kind):
    async def main():
        task = asyncio.create_task(pool.run(ha.add, 1, 2, c=3))
        assert "interpool.Pool.run" in repr(task)
        assert await task == 6
        loop = asyncio.get_running_loop()
        assert await loop.create_task(pool.run(ha.square, 5)) == 25
        with pytest.raises(ha.AsyncTaskError, match="^kaput$") as info:
            await asyncio.create_task(pool.run(ha.boom, "kaput"))
        assert isinstance(info.value.__cause__, interpool.RemoteTraceback)

    run_with(kind, main)


def test_create_task_with_the_eager_task_factory(pool, kind):
    async def main():
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        tasks = [asyncio.create_task(pool.run(ha.square, i)) for i in range(10)]
        assert await asyncio.gather(*tasks) == [i * i for i in range(10)]

    run_with(kind, main)


def test_task_group_collects_results(pool, kind):
    async def main():
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(pool.run(ha.square, i)) for i in range(20)]
            runner_task = tg.create_task(pool.wrap(ha.add)(1, b=2))
        assert [t.result() for t in tasks] == [i * i for i in range(20)]
        assert runner_task.result() == 3

    run_with(kind, main)


def test_runner_run_in_create_task(kind):
    async def main():
        async with interpool.Runner(workers=1) as runner:
            assert await asyncio.create_task(runner.run(ha.square, 7)) == 49

    run_with(kind, main)


def test_failing_task_group_stops_its_running_pool_tasks(tmp_path, kind):
    """One task of a TaskGroup fails: the group cancels its siblings, and
    their pool tasks, running in workers, are stopped there."""
    release = str(tmp_path / "release")  # never created
    d = str(tmp_path)

    async def main():
        pool = interpool.Pool(3)
        with pytest.raises(ExceptionGroup) as info:
            async with asyncio.TaskGroup() as tg:
                for item in (1, 2):
                    tg.create_task(pool.run(ha.mark_stoppable, d, item, release))
                for item in (1, 2):
                    await await_path(os.path.join(d, f"started-{item}"))
                tg.create_task(pool.run(ha.boom, "kaput"))
        assert info.group_contains(ha.AsyncTaskError, match="kaput")
        for item in (1, 2):
            await await_path(os.path.join(d, f"stopped-{item}"))
        # the stopped workers take new work
        assert await asyncio.gather(*[pool.run(ha.square, i) for i in range(6)]) == [
            i * i for i in range(6)
        ]
        await pool.ashutdown()

    run_with(kind, main)
    assert not any(os.path.exists(os.path.join(d, f"ran-{item}")) for item in (1, 2))


def test_cancelling_a_task_stops_its_running_pool_task(tmp_path, kind):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    done = str(tmp_path / "done")

    async def main():
        pool = interpool.Pool(1)
        task = asyncio.create_task(pool.run(ha.block, started, release, "discarded", done))
        await await_path(started)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.get_coro().cancelled()
        # the only worker was freed: it answers without `release`
        assert await pool.run(ha.ident, "next") == "next"
        await pool.ashutdown()

    run_with(kind, main)
    assert not os.path.exists(done)


@pytest.mark.parametrize("factory", ["default", "eager"])
def test_cancelling_a_task_before_its_first_step_drops_the_queued_pool_task(
    tmp_path, kind, factory
):
    """task.cancel() before the task ever ran (asyncio then throws
    CancelledError into the coroutine): the queued pool task never runs."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    marker = tmp_path / "marker"

    async def main():
        if factory == "eager":
            asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        pool = interpool.Pool(1)
        blocker = pool.run(ha.block, started, release, "blocker")
        await await_path(started)
        fut = pool.run(ha.touch, str(marker), "ran")  # queued behind the blocker
        task = asyncio.create_task(fut)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fut.cancelled()
        ha.touch(release)
        assert await blocker == "blocker"
        await pool.ashutdown()  # runs anything still queued

    run_with(kind, main)
    assert not marker.exists()


# ------------------------------------------------------------ wait_for, shield, wait


def test_wait_for(pool, kind):
    async def main():
        assert await asyncio.wait_for(pool.run(ha.square, 4), 30) == 16
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(ha.sleep_return, 5, "late"), 0.05)

    run_with(kind, main)


def test_shield_keeps_the_pool_task_running(tmp_path, kind):
    started, release = str(tmp_path / "started"), str(tmp_path / "release")

    async def main():
        pool = interpool.Pool(1)
        inner = pool.run(ha.block, started, release, "kept")
        outer = asyncio.shield(inner)
        await await_path(started)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert not inner.cancelled()
        ha.touch(release)
        assert await inner == "kept"
        assert await asyncio.shield(pool.run(ha.square, 3)) == 9
        await pool.ashutdown()

    run_with(kind, main)


def test_asyncio_wait_takes_tasks_of_runs(pool, kind):
    """asyncio.wait refuses coroutines, so it wants tasks: create_task()."""

    async def main():
        tasks = {asyncio.create_task(pool.run(ha.square, i)) for i in range(5)}
        done, pending = await asyncio.wait(tasks)
        assert not pending
        assert sorted(t.result() for t in done) == [0, 1, 4, 9, 16]

    run_with(kind, main)


# ------------------------------------------------------------ giving the coroutine up


@pytest.mark.parametrize("how", ["close", "throw"])
def test_giving_up_the_coroutine_cancels_its_queued_task(tmp_path, kind, how):
    """close() or throw() on a pending run (a TaskGroup closes the
    coroutines it refuses): the queued task is removed and never runs."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    marker = tmp_path / "marker"

    async def main():
        pool = interpool.Pool(1)
        blocker = pool.run(ha.block, started, release, "blocker")
        await await_path(started)
        fut = pool.run(ha.touch, str(marker), "ran")
        if how == "close":
            fut.close()
        else:
            with pytest.raises(KeyError, match="given up"):
                fut.throw(KeyError("given up"))
        assert fut.cancelled()
        ha.touch(release)
        assert await blocker == "blocker"
        await pool.ashutdown()

    run_with(kind, main)
    assert not marker.exists()


def test_close_after_the_result_changes_nothing(pool, kind):
    async def main():
        fut = pool.run(ha.square, 2)
        assert await fut == 4
        fut.close()
        assert fut.result() == 4

    run_with(kind, main)


# ------------------------------------------------------------ anyio


def test_anyio_task_group_start_soon(pool, kind):
    anyio = import_anyio()
    results = []

    async def keep(x):
        results.append(await pool.run(ha.square, x))

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, ha.square, 3)        # a coroutine function and its args
            tg.start_soon(pool.wrap(ha.square), 4)       # or the async def from wrap()
            tg.start_soon(keep, 5)
        assert results == [25]

    run_with(kind, main)


def test_anyio_cancel_scope_stops_running_pool_tasks(tmp_path, kind):
    anyio = import_anyio()
    release = str(tmp_path / "release")  # never created
    d = str(tmp_path)

    async def main():
        pool = interpool.Pool(2)
        async with anyio.create_task_group() as tg:
            for item in (1, 2):
                tg.start_soon(pool.run, ha.mark_stoppable, d, item, release)
            for item in (1, 2):
                await await_path(os.path.join(d, f"started-{item}"))
            tg.cancel_scope.cancel()
        for item in (1, 2):
            await await_path(os.path.join(d, f"stopped-{item}"))
        assert await pool.run(ha.ident, "after") == "after"
        await pool.ashutdown()

    run_with(kind, main)
    assert not any(os.path.exists(os.path.join(d, f"ran-{item}")) for item in (1, 2))


def test_anyio_failing_task_stops_its_siblings_pool_tasks(tmp_path, kind):
    anyio = import_anyio()
    release = str(tmp_path / "release")  # never created
    d = str(tmp_path)

    async def main():
        pool = interpool.Pool(3)
        with pytest.raises(ExceptionGroup) as info:
            async with anyio.create_task_group() as tg:
                for item in (1, 2):
                    tg.start_soon(pool.run, ha.mark_stoppable, d, item, release)
                for item in (1, 2):
                    await await_path(os.path.join(d, f"started-{item}"))
                tg.start_soon(pool.run, ha.boom, "kaput")
        assert info.group_contains(ha.AsyncTaskError, match="kaput")
        for item in (1, 2):
            await await_path(os.path.join(d, f"stopped-{item}"))
        await pool.ashutdown()

    run_with(kind, main)
    assert not any(os.path.exists(os.path.join(d, f"ran-{item}")) for item in (1, 2))


def test_anyio_run(kind):
    anyio = import_anyio()

    async def main():
        async with interpool.Pool(1) as pool:
            return await pool.run(ha.square, 6)

    assert anyio.run(main, backend_options={"loop_factory": loop_factory(kind)}) == 36
