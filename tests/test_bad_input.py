"""Wrong input to the constructors and data-plane calls: a clear error at the
call site, and the pool or queue keeps working afterwards."""

import asyncio
import threading

import pytest

import helpers_byvalue as hb
import helpers_tasks as ht
import interpool


@pytest.mark.parametrize(
    "workers, exc_type",
    [("2", TypeError), (True, TypeError), (1.5, TypeError), (0, ValueError), (-1, ValueError)],
)
def test_pool_workers_must_be_a_positive_int(workers, exc_type):
    with pytest.raises(exc_type, match="workers"):
        interpool.Pool(workers)


def test_pool_initializer_must_be_callable():
    with pytest.raises(TypeError, match="initializer"):
        interpool.Pool(1, initializer=42)


def test_pool_loop_factory_must_be_sendable():
    # Issue 12 changed this: a lambda used to be refused; now one that
    # captures values is (it would need them at every call).
    import asyncio

    new_loop = asyncio.new_event_loop

    with pytest.raises(TypeError, match="loop_factory"):
        interpool.Pool(1, loop_factory=lambda: new_loop())


def test_share_of_an_unpicklable_value_names_its_type():
    with interpool.Pool(1) as pool:
        with pytest.raises(TypeError, match="lock"):
            pool.share(threading.Lock())
        assert pool.submit(ht.add, 1, 2).result(timeout=60) == 3


def test_queue_put_of_an_unpicklable_value_names_its_type():
    q = interpool.Queue()
    with pytest.raises(TypeError, match="lock"):
        q.put(threading.Lock())
    assert q.qsize() == 0
    q.put("still works")
    assert q.get(timeout=5) == "still works"


@pytest.mark.parametrize("maxsize", ["2", 1.5, None])
def test_queue_maxsize_must_be_an_int(maxsize):
    with pytest.raises(TypeError):
        interpool.Queue(maxsize)


def test_amap_refuses_an_unsendable_function_before_reading_input():
    pulled = []

    def source():
        for i in range(3):
            pulled.append(i)
            yield i

    # Issue 19 changed this: an instance of a class defined in a function
    # was refused; it travels by value.  A closure that assigns to what it
    # captures cannot travel.
    async def main(pool):
        with pytest.raises(TypeError, match="nonlocal"):
            async for _ in pool.amap(hb.make_nonlocal_writer(), source()):
                pass

    with interpool.Pool(1) as pool:
        asyncio.run(main(pool))
        assert pulled == []
        assert pool.submit(ht.add, 2, 2).result(timeout=60) == 4
