"""interpool.multiprocessing and the Runner's options, typed
(tests/test_typing.py checks it with `mypy --strict` and basedpyright in
strict mode, and runs it)."""

import asyncio
import multiprocessing
from typing import assert_type

from interpool import Pool as InterpoolPool
from interpool import Runner
from interpool.multiprocessing import ApplyResult, AsyncResult, IMapIterator, MapResult, Pool


def square(x: int) -> int:
    return x * x


def label(x: int, name: str) -> str:
    return f"{name}{x}"


async def async_square(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


def check_multiprocessing() -> None:
    seen: list[list[int]] = []
    errors: list[BaseException] = []
    with Pool(2, maxtasksperchild=100) as pool:
        assert_type(pool, Pool)
        assert_type(pool.map(square, range(4)), list[int])
        assert_type(pool.starmap(label, [(1, "a"), (2, "b")]), list[str])
        assert_type(pool.apply(square, (3,)), int)
        result = pool.apply_async(square, (3,), callback=print, error_callback=errors.append)
        assert_type(result, ApplyResult[int])
        assert_type(result.get(timeout=60), int)
        assert_type(result.ready(), bool)
        mapped = pool.map_async(square, [1, 2], callback=seen.append)
        assert_type(mapped, MapResult[int])
        assert_type(mapped.get(), list[int])
        it = pool.imap(square, range(3), chunksize=2)
        assert_type(it, IMapIterator[int])
        assert_type(it.next(timeout=60), int)
        assert_type(list(pool.imap_unordered(square, range(3))), list[int])
        assert_type(pool.starmap_async(label, [(1, "a")]).get(), list[str])
        assert isinstance(result, AsyncResult)
        assert sorted(it) == [1, 4]
    assert seen == [[1, 4]] and errors == []
    try:
        pool.apply(square, (1,))
    except ValueError:   # the pool is not running any more
        pass
    pool.join()
    try:
        Pool(0)
    except ValueError:
        pass
    assert issubclass(multiprocessing.TimeoutError, Exception)


async def check_runner() -> None:
    runner = Runner(max_workers=2, concurrency=4, task_timeout=60.0, max_tasks_per_worker=100)
    for _ in range(2):   # a fresh start each time
        with runner.start() as started:
            assert_type(started, Runner)
            assert_type(await runner.run(async_square, 3), int)
            assert_type(await runner.wrap(square)(4), int)
            assert_type(runner.pool, InterpoolPool)
    with InterpoolPool(max_workers=1) as pool:
        assert_type(pool.submit(square, 2).result(), int)


if __name__ == "__main__":
    check_multiprocessing()
    asyncio.run(check_runner())
    print("typed multiprocessing program ok")
