"""A typed user program of interpool, checked by tests/test_typing.py.

`mypy --strict` must accept it with no error, which also proves every
`assert_type` below.  It runs too (`python typed_program.py`), so the
types it checks are the ones real calls have.
"""

import asyncio
import concurrent.futures
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import Any, assert_type

import interpool
from interpool import (
    BrokenPool,
    InterpreterPoolExecutor,
    InterpreterThreadPoolExecutor,
    Pool,
    PoolShutdownError,
    Queue,
    RemoteError,
    RemoteTraceback,
    Runner,
    Shared,
    SharedBuffer,
    TaskInterrupted,
    interpreter,
)

Future = concurrent.futures.Future


# ------------------------------------------------------------- task functions
# (module level: workers import them by name)


def square(x: int) -> int:
    return x * x


def repeat(text: str, times: int) -> str:
    return text * times


def describe(x: int, *, label: str = "x") -> str:
    return f"{label}={x}"


async def async_square(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


async def async_describe(x: int, *, label: str = "x") -> str:
    await asyncio.sleep(0)
    return f"{label}={x}"


def lookup(table: dict[str, int], key: str) -> int:
    return table[key]


def fill(q: Queue[int], n: int) -> None:
    for i in range(n):
        q.put(i)


def echo_queue(inbox: Queue[str], outbox: Queue[str]) -> None:
    outbox.put(inbox.get().upper())


def fail(message: str) -> None:
    raise ValueError(message)


def first_byte(buf: SharedBuffer) -> int:
    value: int = buf[0]
    return value


# ------------------------------------------------------------------ sync API


def sync_api() -> None:
    with Pool(2) as pool:
        assert_type(pool, Pool)
        assert_type(pool.workers, int)
        assert_type(pool.wait_ready(60), bool)

        # submit: the function's return type; an async def's awaited type
        f = pool.submit(square, 3)
        assert_type(f, Future[int])
        assert_type(f.result(), int)
        assert_type(pool.submit(async_square, 4), Future[int])
        assert_type(pool.submit(describe, 1, label="y"), Future[str])
        assert_type(pool.submit(async_describe, 1, label="y"), Future[str])
        assert pool.submit(async_square, 4).result() == 16

        # schedule (pebble's), map with one and two iterables
        assert_type(pool.schedule(square, (2,), timeout=30), Future[int])
        assert_type(pool.schedule(async_square, [2]), Future[int])
        assert_type(pool.map(square, range(5)), Iterator[int])
        assert_type(pool.map(async_square, [1, 2], chunksize=2), Iterator[int])
        assert_type(pool.map(repeat, ["a", "b"], [2, 3]), Iterator[str])
        assert list(pool.map(repeat, ["a", "b"], [2, 3])) == ["aa", "bbb"]

        # share(): the handle stands for the value where a task takes it
        table = pool.share({"a": 1, "b": 2})
        assert_type(table, dict[str, int])
        assert pool.submit(lookup, table, "b").result() == 2
        assert isinstance(table, Shared)
        Shared.release(table)

        # Queue[T]
        q = Queue[int]()
        assert_type(q, Queue[int])
        pool.submit(fill, q, 3).result()
        assert_type(q.get(), int)
        assert_type(q.get_nowait(), int)
        assert q.get(timeout=30) == 2
        inbox, outbox = Queue[str](), Queue[str](maxsize=1)
        inbox.put("hi")
        pool.submit(echo_queue, inbox, outbox).result()
        assert outbox.get(timeout=30) == "HI"

        buf = SharedBuffer(8)
        buf[0] = 7
        assert_type(pool.submit(first_byte, buf).result(), int)

        # errors
        try:
            pool.submit(fail, "no").result()
        except ValueError as exc:
            cause = exc.__cause__
            assert isinstance(cause, RemoteTraceback)
            assert_type(cause.text, str)
        interrupted: type[BaseException] = TaskInterrupted
        assert not issubclass(interrupted, Exception)
        assert issubclass(BrokenPool, concurrent.futures.BrokenExecutor)
        assert issubclass(PoolShutdownError, RuntimeError)
        remote = RemoteError("pkg.Error", "detail")
        assert_type(remote.type_name, str)
        fut: Future[int] = pool.submit(square, 1)
        assert_type(fut.cancel(), bool)


def executors() -> None:
    with InterpreterPoolExecutor(2) as ex:
        assert_type(ex, InterpreterPoolExecutor)
        assert_type(ex.submit(square, 2), Future[int])
        assert_type(ex.submit(async_square, 2), Future[int])
        assert_type(ex.map(square, [1, 2]), Iterator[int])
        assert_type(ex.map(async_square, [1, 2]), Iterator[int])
        assert_type(ex.pool, Pool)
        assert ex.submit(async_square, 3).result() == 9
        executor: concurrent.futures.Executor = ex  # a drop-in
        assert executor.submit(square, 3).result() == 9

    with InterpreterThreadPoolExecutor(2) as tex:
        assert_type(tex, InterpreterThreadPoolExecutor)
        marked = interpreter(square)
        assert_type(marked(3), int)                 # called here, it just runs
        assert_type(tex.submit(marked, 2), Future[int])
        assert_type(tex.submit(interpreter(async_square), 2), Future[int])
        assert_type(tex.submit(repeat, "a", 2), Future[str])
        assert tex.submit(interpreter(async_square), 5).result() == 25


# --------------------------------------------------------------- asyncio API


async def asyncio_api() -> None:
    async with Pool(2) as pool:
        assert_type(pool, Pool)

        # run: awaited, the function's (awaited) return type
        assert_type(await pool.run(square, 3), int)
        assert_type(await pool.run(async_square, 3), int)
        assert_type(await pool.run(describe, 2, label="z"), str)
        assert_type(await pool.run(async_describe, 2, label="z"), str)

        # run()'s result is an asyncio future and a coroutine
        as_future: asyncio.Future[int] = pool.run(square, 2)
        as_coroutine: Coroutine[Any, Any, int] = pool.run(async_square, 2)
        assert await as_future == await as_coroutine == 4

        # every asyncio idiom takes it
        task = asyncio.create_task(pool.run(square, 4))
        assert_type(task, asyncio.Task[int])
        assert await task == 16
        async with asyncio.TaskGroup() as tg:
            t1 = tg.create_task(pool.run(async_square, 5))
            t2 = tg.create_task(pool.run(repeat, "ab", 2))
        assert_type(t1, asyncio.Task[int])
        assert_type(t2.result(), str)
        a, b = await asyncio.gather(pool.run(square, 1), pool.run(repeat, "x", 2))
        assert_type(a, int)
        assert_type(b, str)
        assert_type(await asyncio.wait_for(pool.run(square, 2), 30), int)
        assert_type(await asyncio.shield(pool.run(async_square, 2)), int)
        ensured: asyncio.Future[int] = asyncio.ensure_future(pool.run(square, 2))
        assert_type(await ensured, int)
        async with asyncio.timeout(30):
            assert_type(await pool.run(square, 6), int)
        done, _ = await asyncio.wait([asyncio.create_task(pool.run(square, 7))])
        assert [t.result() for t in done] == [49]

        # wrap: an async def version, same parameters
        wrapped = pool.wrap(square)
        assert_type(await wrapped(3), int)
        as_callable: Callable[[int], Coroutine[Any, Any, int]] = wrapped
        assert_type(await pool.wrap(async_square)(3), int)
        assert await as_callable(2) == 4

        # amap and as_completed
        async for value in pool.amap(square, range(3)):
            assert_type(value, int)
        async for value in pool.amap(async_square, [1, 2], ordered=False):
            assert_type(value, int)
        results = pool.amap(square, [1])
        assert_type(results, AsyncGenerator[int, None])
        await results.aclose()
        async for finished in pool.as_completed([pool.run(square, 1), pool.run(square, 2)]):
            assert_type(finished, asyncio.Future[int])
            assert_type(await finished, int)

        # Queue from the loop
        q = Queue[str]()
        await q.aput("x")
        assert_type(await q.aget(), str)

        # errors
        try:
            await pool.run(fail, "no")
        except ValueError as exc:
            assert isinstance(exc.__cause__, RemoteTraceback)

    with Runner(workers=1) as runner:
        assert_type(runner, Runner)
        assert_type(runner.pool, Pool)
        assert_type(await runner.run(square, 2), int)
        assert_type(await runner.run(async_square, 2), int)
        assert_type(await runner.wrap(square)(2), int)
        assert_type(await asyncio.create_task(runner.run(square, 2)), int)
    async with Runner(workers=1) as started:
        assert_type(started, Runner)
    assert_type(Runner(workers=1).start, Callable[[], Runner])


def main() -> None:
    sync_api()
    executors()
    asyncio.run(asyncio_api())
    assert interpool.__version__
    print("typed program ok")


if __name__ == "__main__":
    main()
