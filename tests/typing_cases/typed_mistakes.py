"""Mistakes `mypy --strict` must reject (tests/test_typing.py): each line
marked `# E: <code>` must get an error with that code, and no other line
may get one."""

import asyncio

import interpool
from interpool import Pool, Queue


def square(x: int) -> int:
    return x * x


async def async_square(x: int) -> int:
    return x * x


def takes_table(table: dict[str, int]) -> int:
    return len(table)


interpool.Pooll(2)  # E: attr-defined
from interpool import Runnr  # E: attr-defined  # noqa: E402


def sync_mistakes(pool: Pool) -> None:
    pool.submit(square, "3")  # E: call-overload
    pool.submit(square, 1, 2)  # E: call-overload
    pool.submit(square, y=1)  # E: call-overload
    text: str = pool.submit(square, 1).result()  # E: assignment
    awaited: str = pool.submit(async_square, 1).result()  # E: assignment
    pool.map(square, ["a"])  # E: arg-type
    pool.map(square, [1], ["a"])  # E: arg-type
    ex = interpool.InterpreterPoolExecutor()
    ex.submit(square, "3")  # E: call-overload
    ex.map(square, ["a"])  # E: arg-type
    pool.schedule(square, (1,), timeout="soon")  # E: call-overload
    pool.submit(takes_table, pool.share([1, 2]))  # E: call-overload
    q = Queue[int]()
    q.put("one")  # E: arg-type
    name: str = q.get()  # E: assignment


async def async_mistakes(pool: Pool) -> None:
    label: str = await pool.run(async_square, 1)  # E: call-overload
    await pool.run(square, x="1")  # E: call-overload
    await pool.wrap(square)("1")  # E: arg-type
    task: asyncio.Task[str] = asyncio.create_task(pool.run(square, 1))  # E: call-overload
    async for item in pool.amap(square, ["a"]):  # E: arg-type var-annotated
        pass
    q = Queue[bytes]()
    await q.aput(1)  # E: arg-type
