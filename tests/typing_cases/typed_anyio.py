"""anyio with interpool, typed (tests/test_typing.py checks it with
`mypy --strict` and basedpyright in strict mode, and runs it when anyio is
installed).

anyio's ``start_soon`` takes a coroutine function and its arguments:
``tg.start_soon(pool.run, fn, *args)`` (pool.run returns a coroutine) or
``tg.start_soon(pool.wrap(fn), *args)``.  mypy accepts both; pyright
cannot match the overloaded ``pool.run`` (one overload for ``async def``
functions, one for the others) against ``start_soon``'s variadic
parameters, so with pyright write ``tg.start_soon(pool.wrap(fn), *args)``.
"""

import anyio

import interpool


def square(x: int) -> int:
    return x * x


async def async_square(x: int) -> int:
    return x * x


async def main() -> list[int]:
    results: list[int] = []

    async def keep(n: int) -> None:
        results.append(await pool.run(square, n))

    async with interpool.Pool(2) as pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, square, 2)  # pyright: ignore[reportArgumentType]
            tg.start_soon(pool.run, async_square, 3)  # pyright: ignore[reportArgumentType]
            tg.start_soon(pool.wrap(async_square), 3)
            tg.start_soon(pool.wrap(square), 4)
            tg.start_soon(keep, 5)
    return results


if __name__ == "__main__":
    assert anyio.run(main) == [25]
    print("typed anyio program ok")
