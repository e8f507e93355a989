"""The data plane: Pool.share, zero-copy buffers, SharedBuffer, Queue.

Behaviour, not timings: counts of live C objects (``_core.live_counts()``)
are polled with a deadline, since workers let go of things a moment after
the event that asks them to.
"""

import array
import asyncio
import collections
import fractions
import gc
import mmap
import queue
import textwrap
import time

import pytest

import helpers_data as hd
import interpool
from helpers_util import run_python, wait_until
from interpool import _core

WORKERS = 2


# ------------------------------------------------------------------ helpers


def counts():
    return _core.live_counts()


def settle(baseline, keys, timeout=20.0):
    """Poll until every count in `keys` is back to (at most) its baseline."""

    def ok():
        gc.collect()
        now = counts()
        return all(now[k] <= baseline[k] for k in keys)

    assert wait_until(ok, timeout), f"leaked {keys}: baseline {baseline}, now {counts()}"


@pytest.fixture(autouse=True)
def quiesce():
    """Let the previous test's leftovers (copies of released values being
    purged, garbage futures) settle, so relative counts start from rest."""
    gc.collect()
    last, stable, deadline = None, 0, time.monotonic() + 2.0
    while stable < 3 and time.monotonic() < deadline:
        now = counts()
        stable = stable + 1 if now == last else 0
        last = now
        time.sleep(0.003)
    yield


@pytest.fixture(scope="module")
def pool():
    p = interpool.Pool(WORKERS, name="data-plane-pool")
    assert p.wait_ready(60)
    yield p
    p.shutdown()


@pytest.fixture
def solo():
    """A one-worker pool: every task lands on the same interpreter."""
    p = interpool.Pool(1, name="data-plane-solo")
    assert p.wait_ready(60)
    yield p
    p.shutdown()


# ================================================================== Pool.share


def test_share_sends_value_once_per_worker(pool):
    h = pool.share({"big": list(range(1000))})
    try:
        futures = [pool.submit(hd.value_id, h) for _ in range(200)]
        pairs = [f.result(timeout=60) for f in futures]
    finally:
        h.release()
    per_worker = collections.defaultdict(set)
    for worker, ident in pairs:
        per_worker[worker].add(ident)
    assert len(per_worker) <= WORKERS
    # Each worker decoded the value once and reused its copy every time.
    assert all(len(ids) == 1 for ids in per_worker.values()), per_worker
    assert len({ident for _, ident in pairs}) <= WORKERS


def test_shared_copy_is_the_workers_own_and_persists(solo):
    h = solo.share([])
    try:
        seen = [solo.submit(hd.append_mark, h, i).result(timeout=60) for i in range(5)]
    finally:
        h.release()
    # Mutations to the worker's copy are visible to its later tasks...
    assert [copy for _, copy in seen] == [list(range(i + 1)) for i in range(5)]


def test_shared_mutation_per_worker_two_workers(pool):
    h = pool.share([])
    try:
        seen = [pool.submit(hd.append_mark, h, i).result(timeout=60) for i in range(20)]
    finally:
        h.release()
    # Tasks land on either worker; each worker's copy accumulates only the
    # marks of the tasks it ran, in order.
    marks = collections.defaultdict(list)
    for i, (worker, copy) in enumerate(seen):
        marks[worker].append(i)
        assert copy == marks[worker]
    assert len(marks) <= WORKERS


def test_shared_caller_value_unchanged(solo):
    value = [1, 2]
    h = solo.share(value)
    value.append(3)   # encoded at share(): later changes do not travel
    try:
        assert solo.submit(hd.append_mark, h, "w").result(timeout=60)[1] == [1, 2, "w"]
    finally:
        h.release()
    assert value == [1, 2, 3]


def test_shared_inside_containers(solo):
    h = solo.share({"k": "v"})
    try:
        _, ids = solo.submit(hd.nested_ids, [h, h]).result(timeout=60)
        assert ids[0] == ids[1]
        _, ids2 = solo.submit(hd.nested_ids, (h,)).result(timeout=60)
        _, ids3 = solo.submit(hd.nested_ids, {"a": h, "b": h}).result(timeout=60)
        assert ids2 == [ids[0]]
        assert ids3 == {"a": ids[0], "b": ids[0]}
        args, kwargs = solo.submit(hd.echo_types, [h], {"x": h}, (h, 1), kw=h).result(timeout=60)
        assert args == [["dict"], {"x": "dict"}, ["dict", "int"]]
        assert kwargs == {"kw": {"k": "str"}}   # the dict itself
    finally:
        h.release()


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2, {"b": (3, 4)}], "c": None},
        list(range(100)),
        b"\x00\xffbytes" * 100,
        bytearray(b"copied, not a view"),
        2**300 + 12345,
        -(2**100),
        fractions.Fraction(22, 7),
        hd.Point(1, 2),
        {"nested": [hd.Point(3, 4), frozenset({1, 2})]},
        "text ☃",
        (1.5, True, None),
    ],
    ids=lambda v: type(v).__name__,
)
def test_share_any_codec_value(pool, value):
    with pool.share(value) as h:
        assert h.nbytes > 0
        results = [pool.submit(hd.identity, h).result(timeout=60) for _ in range(4)]
    assert all(r == value and type(r) is type(value) for r in results)


def test_share_several_values_with_initializer_state():
    p = interpool.Pool(WORKERS, initializer=hd.init_state, initargs=("cfg",))
    try:
        table = p.share({"a": 2, "b": 3})
        weights = p.share({"a": 10, "b": 100})
        futures = [p.submit(hd.combine, table, weights, k) for k in "ab" * 10]
        results = [f.result(timeout=60) for f in futures]
        assert results == [("cfg", True, 20), ("cfg", True, 300)] * 10
        table.release()
        weights.release()
    finally:
        p.shutdown()


def test_released_handle_raises_value_error(pool):
    h = pool.share([1])
    assert not h.released
    h.release()
    assert h.released
    h.release()   # idempotent
    with pytest.raises(ValueError):
        pool.submit(hd.identity, h)
    with pytest.raises(ValueError):
        pool.submit(hd.identity, [1, {"x": h}])
    with pytest.raises(ValueError):
        pool.submit(hd.identity, x=h)
    with pytest.raises(ValueError):
        list(pool.map(hd.identity, [h]))


def test_cannot_share_a_handle(pool):
    with pool.share(1) as h:
        with pytest.raises(TypeError):
            pool.share(h)


def test_share_after_shutdown_raises():
    p = interpool.Pool(1)
    p.shutdown()
    with pytest.raises(RuntimeError):
        p.share([1])


def test_release_frees_copies_in_every_worker(pool):
    base = counts()
    h = pool.share(list(range(100)))
    futures = [pool.submit(hd.sum_shared, h) for _ in range(50)]
    assert all(f.result(timeout=60) == 4950 for f in futures)
    assert 1 <= counts()["shared_copies"] <= base["shared_copies"] + WORKERS
    assert 1 <= counts()["shared"] <= base["shared"] + 1
    h.release()
    # Idle workers are woken to purge: no further task is needed.
    settle(base, ["shared_copies"])
    del futures
    del h
    settle(base, ["shared", "shared_copies", "tasks"])


def test_dropping_the_handle_frees_it(pool):
    base = counts()
    h = pool.share({"x": 1})
    assert pool.submit(hd.identity, h).result(timeout=60) == {"x": 1}
    del h
    settle(base, ["shared", "shared_copies", "tasks"])


def test_handle_collected_while_tasks_queued(solo, tmp_path):
    base = counts()
    gate = tmp_path / "go"
    blocker = solo.submit(hd.block_on_file, str(gate))
    h = solo.share(list(range(10)))
    queued = [solo.submit(hd.sum_shared, h) for _ in range(5)]
    nested = solo.submit(hd.identity, {"in": [h]})   # inside containers too
    del h
    gc.collect()
    # The queued payloads keep the value alive though its handle is gone.
    assert counts()["shared"] >= base["shared"] + 1
    gate.touch()
    blocker.result(timeout=60)
    assert [f.result(timeout=60) for f in queued] == [45] * 5
    assert nested.result(timeout=60) == {"in": [list(range(10))]}
    del queued, nested, blocker
    settle(base, ["shared", "shared_copies", "tasks"])


def test_release_while_tasks_queued_still_delivers(solo, tmp_path):
    base = counts()
    gate = tmp_path / "go"
    blocker = solo.submit(hd.block_on_file, str(gate))
    h = solo.share([1, 2, 3])
    queued = [solo.submit(hd.sum_shared, h) for _ in range(3)]
    h.release()
    with pytest.raises(ValueError):
        solo.submit(hd.sum_shared, h)
    gate.touch()
    assert [f.result(timeout=60) for f in queued] == [6, 6, 6]
    del queued, blocker, h
    settle(base, ["shared", "shared_copies", "tasks"])


def test_share_release_cycles_do_not_leak(pool):
    base = counts()
    futures = []
    for i in range(10_000):
        h = pool.share([i, i])
        if i % 10 == 0:
            futures.append((i, pool.submit(hd.sum_shared, h)))
        h.release()
    for i, f in futures:
        assert f.result(timeout=60) == 2 * i
    del futures, f, h
    settle(base, ["shared", "shared_copies", "tasks"])


def test_share_release_cycles_one_task_each(pool):
    base = counts()
    for i in range(2_000):
        with pool.share((i,)) as h:
            assert pool.submit(hd.sum_shared, h).result(timeout=60) == i
    del h
    settle(base, ["shared", "shared_copies", "tasks"])


# ================================================================== zero-copy buffers


def test_array_arrives_as_typed_view_and_can_be_written(pool):
    a = array.array("d", [1.0, 2.5, -3.0])
    info = pool.submit(hd.view_info, a).result(timeout=60)
    assert info == {
        "type": "memoryview",
        "format": "d",
        "itemsize": 8,
        "len": 3,
        "nbytes": 24,
        "readonly": False,
        "ndim": 1,
        "items": [1.0, 2.5, -3.0],
    }
    assert pool.submit(hd.scale, a, 2.0).result(timeout=60) == "d"
    assert a.tolist() == [2.0, 5.0, -6.0]


@pytest.mark.parametrize(
    "make",
    [
        lambda: bytearray(32),
        lambda: memoryview(bytearray(32)),
        lambda: array.array("B", bytes(32)),
        lambda: mmap.mmap(-1, 32),
        lambda: memoryview(bytearray(64))[16:48],   # contiguous slice
    ],
    ids=["bytearray", "memoryview", "array", "mmap", "slice"],
)
def test_worker_writes_into_callers_buffer(pool, make):
    buf = make()
    assert pool.submit(hd.fill, buf, 7).result(timeout=60) == 32
    assert bytes(buf) == b"\x07" * 32
    if isinstance(buf, mmap.mmap):
        buf.close()


def test_slice_writes_land_in_the_parent(pool):
    parent = bytearray(8)
    pool.submit(hd.fill, memoryview(parent)[2:5], 1).result(timeout=60)
    assert parent == bytearray(b"\x00\x00\x01\x01\x01\x00\x00\x00")


def test_readonly_buffer_arrives_readonly(pool):
    ro = memoryview(b"abc")
    info = pool.submit(hd.view_info, ro).result(timeout=60)
    assert info["type"] == "memoryview" and info["readonly"] is True
    assert info["items"] == [97, 98, 99]
    assert pool.submit(hd.try_write, ro).result(timeout=60) == "TypeError"
    assert pool.submit(hd.try_write, bytearray(b"abc")).result(timeout=60) is None


def test_bytes_are_copied_not_viewed(pool):
    base = counts()
    assert pool.submit(hd.type_name, b"abc").result(timeout=60) == "bytes"
    assert pool.submit(hd.echo_types, [b"x"], {"k": b"y"}).result(timeout=60) == (
        [["bytes"], {"k": "bytes"}],
        {},
    )
    assert counts()["exports"] == base["exports"]


def test_buffers_inside_containers_are_views(pool):
    ba = bytearray(4)
    arr = array.array("i", [0, 0])
    args, kwargs = pool.submit(hd.echo_types, [ba], {"a": arr}, kw=(ba,)).result(timeout=60)
    assert args == [["memoryview"], {"a": "memoryview"}]
    assert kwargs == {"kw": ["memoryview"]}


def test_non_contiguous_view_rejected_at_submit(pool):
    base = counts()
    with pytest.raises(TypeError):
        pool.submit(hd.identity, memoryview(bytearray(10))[::2])
    with pytest.raises(TypeError):
        pool.submit(hd.identity, [1, memoryview(bytearray(10))[::2]])
    gc.collect()
    assert counts()["exports"] <= base["exports"]
    assert counts()["tasks"] <= base["tasks"]


def test_exporter_pinned_while_worker_holds_view(solo):
    base = counts()
    ba = bytearray(16)
    assert solo.submit(hd.stash, ba).result(timeout=60) == 1
    assert counts()["exports"] >= base["exports"] + 1
    with pytest.raises(BufferError):
        ba.append(0)
    with pytest.raises(BufferError):
        ba.extend(b"more")
    # The worker still writes through its stashed view.
    assert solo.submit(hd.first_byte, ba).result(timeout=60) == 0
    assert solo.submit(hd.unstash).result(timeout=60) == 1
    settle(base, ["exports"])
    ba.append(1)   # no view left anywhere: resizing works again
    assert len(ba) == 17


def test_buffer_round_trips_do_not_leak(pool):
    base = counts()
    ba = bytearray(b"\x05" * 16)
    arr = array.array("d", [1.0])
    futures = []
    for i in range(10_000):
        futures.append(pool.submit(hd.first_byte, ba if i % 2 else arr))
    for i, f in enumerate(futures):
        assert f.result(timeout=60) == (5 if i % 2 else 1.0)
    del futures, f
    settle(base, ["exports", "tasks"])
    ba.append(0)   # every export was released


def test_shared_value_never_holds_a_view(pool):
    base = counts()
    ba = bytearray(b"abc")
    with pool.share([ba]) as h:
        ba[0] = ord("z")   # the shared value was copied at share()
        assert pool.submit(hd.identity, h).result(timeout=60) == [bytearray(b"abc")]
    assert counts()["exports"] == base["exports"]
    ba.append(0)


# ================================================================== SharedBuffer


def test_shared_buffer_basics():
    sb = interpool.SharedBuffer(8)
    assert len(sb) == 8 and sb.size == 8
    assert bytes(sb) == bytes(8)
    sb[0] = 1
    memoryview(sb)[1] = 2
    assert sb[0] == 1 and sb[1] == 2
    assert bytes(sb[0:3]) == b"\x01\x02\x00"
    with pytest.raises(ValueError):
        interpool.SharedBuffer(-1)
    assert len(interpool.SharedBuffer(0)) == 0


def test_shared_buffer_same_memory_both_sides(pool):
    base = counts()
    sb = interpool.SharedBuffer(6)
    sb[0] = 9
    assert pool.submit(hd.sb_info, sb).result(timeout=60) == ("SharedBuffer", 6, b"\x09" + bytes(5))
    assert pool.submit(hd.sb_write, sb, 2, 40).result(timeout=60) == "SharedBuffer"
    assert bytes(sb) == b"\x09\x00\x28\x29\x00\x00"
    # Inside a container too.
    assert pool.submit(hd.echo_types, [sb]).result(timeout=60) == ([["SharedBuffer"]], {})
    del sb
    settle(base, ["blocks", "tasks"])


def test_worker_creates_and_returns_shared_buffer(pool):
    base = counts()
    sb = pool.submit(hd.sb_make, 5, 3).result(timeout=60)
    assert isinstance(sb, interpool.SharedBuffer)
    assert bytes(sb) == b"\x03" * 5
    # The caller's object and the worker's memory are one: write and read back.
    sb[4] = 100
    assert pool.submit(hd.sb_info, sb).result(timeout=60)[2] == b"\x03" * 4 + b"d"
    assert counts()["blocks"] >= base["blocks"] + 1
    del sb
    settle(base, ["blocks", "tasks"])


def test_shared_buffer_outlives_caller_reference(solo):
    base = counts()
    sb = interpool.SharedBuffer(3)
    sb[0] = 1
    assert solo.submit(hd.sb_stash, sb).result(timeout=60) == 1
    del sb
    gc.collect()
    assert counts()["blocks"] >= base["blocks"] + 1   # the worker still holds it
    assert solo.submit(hd.unstash).result(timeout=60) == 1
    settle(base, ["blocks", "tasks"])


# ================================================================== Queue


def test_queue_api_in_main():
    q = interpool.Queue(2)
    assert q.maxsize == 2 and q.qsize() == 0 and q.empty() and not q.full()
    q.put(1)
    q.put_nowait({"two": 2})
    assert q.full() and q.qsize() == 2 and not q.empty()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    assert q.get() == 1
    assert q.get_nowait() == {"two": 2}
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    assert interpool.Queue().maxsize == 0
    unbounded = interpool.Queue()
    for i in range(1000):
        unbounded.put_nowait(i)
    assert not unbounded.full() and unbounded.qsize() == 1000
    assert [unbounded.get_nowait() for _ in range(1000)] == list(range(1000))


def test_queue_api_in_worker(pool):
    q = interpool.Queue(1)
    assert pool.submit(hd.q_api, q).result(timeout=60) == [
        1, 0, True, False, "full", True, "a", "empty", "empty-timeout",
    ]
    assert q.empty()


def test_queue_main_to_worker_and_back(pool):
    q = interpool.Queue()
    q.put({"x": [1, 2]})
    assert pool.submit(hd.q_get, q).result(timeout=60) == {"x": [1, 2]}
    assert pool.submit(hd.q_put, q, (3, "four")).result(timeout=60) is True
    assert q.get(timeout=60) == (3, "four")


def test_an_item_a_worker_cannot_decode_stays_in_the_queue(pool):
    """get() in an interpreter that cannot rebuild the item (its class's
    module does not load there) raises, and puts the item back at the
    front, in order: another interpreter can still take it."""
    import helpers_no_subinterp as hn

    q = interpool.Queue()
    q.put(hn.Opaque(1))
    q.put("second")
    assert pool.submit(hd.q_get_error, q).result(timeout=60) == "ImportError"
    assert q.qsize() == 2
    assert q.get(timeout=60) == hn.Opaque(1)
    assert q.get(timeout=60) == "second"


def test_worker_blocked_in_get_wakes_on_put(pool):
    ready, q = interpool.Queue(), interpool.Queue()
    f = pool.submit(hd.q_ready_then_get, ready, q)
    assert ready.get(timeout=60) == "ready"
    time.sleep(0.05)   # let it reach the blocking get()
    assert not f.done()
    q.put("wake up")
    assert f.result(timeout=60) == "wake up"


def test_bounded_queue_blocks_worker_producer(pool):
    q = interpool.Queue(2)
    n = 20
    f = pool.submit(hd.q_produce, q, n)
    assert wait_until(q.full, 30)
    # n + 1 puts cannot fit in 2 slots: the producer waits for us.
    time.sleep(0.05)
    assert not f.done()
    assert q.qsize() == 2
    got = []
    while True:
        assert q.qsize() <= 2
        item = q.get(timeout=60)
        if item is None:
            break
        got.append(item)
        time.sleep(0.002)   # a slow consumer
    assert got == list(range(n))
    assert f.result(timeout=60) == n


def test_bounded_queue_blocks_main_producer(pool):
    q = interpool.Queue(1)
    q.put("first")
    f = pool.submit(hd.q_get, q)
    q.put("second", timeout=60)   # room appears once the worker takes "first"
    assert f.result(timeout=60) == "first"
    assert q.get_nowait() == "second"


def test_queue_passed_in_containers_and_returned(pool):
    base = counts()
    q, q2 = interpool.Queue(), interpool.Queue()
    assert pool.submit(hd.q_in_container, {"q": q, "qs": [q2], "item": 10}).result(timeout=60) == "Queue"
    assert q.get(timeout=60) == 10 and q2.get(timeout=60) == 11
    made = pool.submit(hd.q_new, 0).result(timeout=60)
    assert isinstance(made, interpool.Queue)
    assert made.get(timeout=60) == "from-worker"
    made.put("back")
    assert pool.submit(hd.q_get, made).result(timeout=60) == "back"
    del q, q2, made
    settle(base, ["queues", "tasks"])


def test_queue_pipeline_in_order(pool):
    base = counts()
    n = 1000
    q0, q1, q2 = interpool.Queue(8), interpool.Queue(8), interpool.Queue()
    a = pool.submit(hd.q_stage, q0, q1, 1)
    b = pool.submit(hd.q_stage, q1, q2, 1000)
    for i in range(n):
        q0.put(i, timeout=60)
    q0.put(None, timeout=60)
    got = []
    while (item := q2.get(timeout=60)) is not None:
        got.append(item)
    assert got == [i + 1001 for i in range(n)]
    assert a.result(timeout=60) == n and b.result(timeout=60) == n
    assert q0.empty() and q1.empty() and q2.empty()
    del q0, q1, q2, a, b
    settle(base, ["queues", "tasks"])


def test_queue_buffers_travel_zero_copy(pool):
    base = counts()
    q = interpool.Queue()
    ba = bytearray(8)
    q.put(ba)
    assert counts()["exports"] >= base["exports"] + 1   # pinned by the queued item
    with pytest.raises(BufferError):
        ba.append(0)
    assert pool.submit(hd.q_get_and_fill, q, 6).result(timeout=60) == "memoryview"
    assert ba == bytearray(b"\x06" * 8)
    settle(base, ["exports"])
    ba.append(0)
    # A queued item that nobody gets is released with the queue.
    q.put(ba)
    del q
    settle(base, ["exports", "queues"])
    ba.append(0)


def flush_worker_exports(solo):
    """Hygiene: a worker releases exports of its own buffers that other
    interpreters dropped only when it next calls Queue.put (see the xfail
    tests below); make the solo worker do that now, so no export outlives its
    interpreter (which could crash a later test)."""
    solo.submit(hd.q_put, interpool.Queue(), 0).result(timeout=60)


def test_queue_from_worker_buffer_content(solo):
    base = counts()
    q = interpool.Queue()
    assert solo.submit(hd.q_put_buffer, q, 4, 9).result(timeout=60) is True
    # A worker's buffer would dangle once its interpreter ends, so items a
    # worker puts are copies (only the main interpreter shares zero-copy;
    # SharedBuffer is shared both ways).
    item = q.get(timeout=60)
    assert isinstance(item, bytearray)
    assert bytes(item) == b"\x09" * 4
    assert counts()["exports"] == base["exports"]
    del item, q
    flush_worker_exports(solo)
    settle(base, ["exports", "queues"])


def test_queue_items_are_copies_of_values():
    q = interpool.Queue()
    d = {"a": [1]}
    q.put(d)
    d["a"].append(2)
    assert q.get() == {"a": [1]}


def test_async_aget_aput(pool):
    q_in, q_out = interpool.Queue(3), interpool.Queue(3)
    f = pool.submit(hd.q_stage, q_in, q_out, 100)

    async def main():
        got = []
        async def produce():
            for i in range(50):
                await q_in.aput(i)
            await q_in.aput(None)
        producer = asyncio.create_task(produce())
        while (item := await asyncio.wait_for(q_out.aget(), 60)) is not None:
            got.append(item)
        await producer
        return got

    assert asyncio.run(main()) == [i + 100 for i in range(50)]
    assert f.result(timeout=60) == 50


def test_async_aget_wakes_on_worker_put(pool):
    q = interpool.Queue()

    async def main():
        waiter = asyncio.create_task(q.aget())
        await asyncio.sleep(0.02)
        assert not waiter.done()
        f = pool.submit(hd.q_put, q, "from worker")
        got = await asyncio.wait_for(waiter, 60)
        return got, f

    got, f = asyncio.run(main())
    assert got == "from worker" and f.result(timeout=60) is True


def test_async_waiters_cancelled_cleanly():
    q = interpool.Queue(1)

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(q.aget(), 0.02)
        await q.aput(1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(q.aput(2), 0.02)
        return await q.aget()

    assert asyncio.run(main()) == 1
    assert q.empty()


def test_async_queue_with_uvloop(pool):
    uvloop = pytest.importorskip("uvloop")
    q_in, q_out = interpool.Queue(2), interpool.Queue(2)
    f = pool.submit(hd.q_stage, q_in, q_out, 1)

    async def main():
        async def produce():
            for i in range(30):
                await q_in.aput(i)
            await q_in.aput(None)
        producer = asyncio.create_task(produce())
        got = []
        while (item := await q_out.aget()) is not None:
            got.append(item)
        await producer
        return got

    assert uvloop.run(main()) == list(range(1, 31))
    assert f.result(timeout=60) == 30


def test_worker_event_loop_uses_aget_aput(pool):
    q_in, q_out = interpool.Queue(), interpool.Queue()
    f = pool.submit(hd.q_async_roundtrip, q_in, q_out, 10)
    for i in range(10):
        q_in.put(i)
    assert [q_out.get(timeout=60) for _ in range(10)] == [2 * i for i in range(10)]
    assert f.result(timeout=60) == 10


def test_queues_back_to_baseline(pool):
    base = counts()
    qs = [interpool.Queue(i % 3) for i in range(50)]
    for q in qs:
        q.put(b"item")
    futures = [pool.submit(hd.q_get, q) for q in qs]
    assert [f.result(timeout=60) for f in futures] == [b"item"] * 50
    assert counts()["queues"] >= base["queues"] + 50
    del qs, q, futures
    settle(base, ["queues", "tasks"])


# ================================================================== lifetime / crash safety


def test_no_task_leak_after_data_plane_work(pool):
    base = counts()
    h = pool.share([1, 2])
    sb = interpool.SharedBuffer(4)
    q = interpool.Queue()
    futures = [pool.submit(hd.echo_types, h, sb, q, bytearray(2)) for _ in range(100)]
    for f in futures:
        assert f.result(timeout=60) == ([["int", "int"], "SharedBuffer", "Queue", "memoryview"], {})
    h.release()
    del futures, f, h, sb, q
    settle(base, ["tasks", "shared", "shared_copies", "exports", "blocks", "queues"])


SHUTDOWN_WHILE_VIEW_HELD = textwrap.dedent(
    """
    import gc, sys
    import interpool, helpers_data as hd
    from interpool import _core

    ba = bytearray(32)
    sb = interpool.SharedBuffer(8)
    pool = interpool.Pool(2)
    pool.submit(hd.stash, ba).result(timeout=60)
    pool.submit(hd.stash, memoryview(ba)).result(timeout=60)
    pool.submit(hd.sb_stash, sb).result(timeout=60)
    h = pool.share(list(range(10)))
    pool.submit(hd.sum_shared, h).result(timeout=60)
    pool.shutdown()   # workers exit holding views, a block and copies
    gc.collect()
    c = _core.live_counts()
    assert c["exports"] == 0, c
    assert c["shared_copies"] == 0, c
    ba.append(1)      # the exports were released in the caller
    del sb, h
    gc.collect()
    c = _core.live_counts()
    assert c["blocks"] == 0 and c["shared"] == 0, c
    print("ok")
    """
)


def test_shutdown_while_worker_holds_views(tmp_path):
    r = run_python(["-c", SHUTDOWN_WHILE_VIEW_HELD], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


SHUTDOWN_WITHOUT_WAIT = textwrap.dedent(
    """
    import interpool, helpers_data as hd
    ba = bytearray(32)
    pool = interpool.Pool(2)
    h = pool.share({"k": 1})
    for _ in range(20):
        pool.submit(hd.stash, ba)
        pool.submit(hd.identity, h)
    pool.shutdown(wait=False)
    del h
    print("ok")
    """
)


def test_exit_while_views_and_shared_values_in_flight(tmp_path):
    r = run_python(["-c", SHUTDOWN_WITHOUT_WAIT], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


# ================================================================== known bugs


def test_worker_buffer_received_in_main_is_released(solo):
    """A worker's bytearray put into a Queue arrives in main as a view; once
    main drops it, the export must be released even if that worker stays idle."""
    base = counts()
    q = interpool.Queue()
    assert solo.submit(hd.q_put_buffer, q, 16, 1).result(timeout=60) is True
    view = q.get(timeout=60)
    assert bytes(view) == b"\x01" * 16
    del view
    try:
        settle(base, ["exports"], timeout=1.0)
    finally:
        flush_worker_exports(solo)


def test_worker_owned_export_released_after_pool_shutdown(tmp_path):
    # In a subprocess: the leaked export names a dead interpreter, which can
    # crash a later interpreter (see the next test).
    script = textwrap.dedent(
        """
        import gc
        import interpool, helpers_data as hd
        from interpool import _core
        q = interpool.Queue()
        with interpool.Pool(1) as p:
            p.submit(hd.q_put_buffer, q, 16, 1).result(timeout=60)
            view = q.get(timeout=60)
        assert bytes(view) == b"\\x01" * 16
        del view, q
        gc.collect()
        c = _core.live_counts()
        # The one process-wide channel workers forward output on lives on.
        assert c["exports"] == 0 and c["queues"] == (interpool._forwarding._channel is not None), c
        print("ok")
        """
    )
    r = run_python(["-c", script], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok"


WORKER_EXPORT_OUTLIVES_WORKER = textwrap.dedent(
    """
    import gc, sys
    import interpool, helpers_data as hd
    q = interpool.Queue()
    for _ in range(12):
        with interpool.Pool(1) as p:
            p.submit(hd.q_put_buffer, q, 100, 7).result(timeout=60)
            view = q.get(timeout=60)
        # The worker's interpreter is gone; main drops its view of its bytearray.
        del view
        gc.collect()
        # A new worker calls into the queue (which runs ip_release_deferred).
        with interpool.Pool(1) as p2:
            p2.submit(hd.q_put, q, b"x").result(timeout=60)
        q.get(timeout=60)
    from interpool import _core
    assert _core.live_counts()["exports"] == 0, _core.live_counts()
    print("ok")
    """
)


def test_worker_export_outliving_worker_does_not_crash(tmp_path):
    r = run_python(["-c", WORKER_EXPORT_OUTLIVES_WORKER], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok"


def test_shared_handle_through_queue_to_main_is_freed(pool):
    base = counts()
    h = pool.share([1, 2, 3])
    q = interpool.Queue()
    q.put(h)
    assert q.get(timeout=60) == [1, 2, 3]
    h.release()
    del h, q
    settle(base, ["shared", "shared_copies", "queues"], timeout=1.0)


def test_cancelled_task_releases_its_buffer(solo, tmp_path):
    base = counts()
    gate = tmp_path / "go"
    blocker = solo.submit(hd.block_on_file, str(gate))
    ba = bytearray(4)
    f = solo.submit(hd.fill, ba, 1)
    try:
        assert f.cancel()
        settle(base, ["exports"], timeout=1.0)
        ba.append(0)
    finally:
        gate.touch()
        blocker.result(timeout=60)
    del f


def test_cancel_futures_at_shutdown_releases_buffers(tmp_path):
    base = counts()
    p = interpool.Pool(1)
    gate = tmp_path / "go"
    blocker = p.submit(hd.block_on_file, str(gate))
    assert wait_until(blocker.running, 30)
    ba = bytearray(4)
    futures = [p.submit(hd.fill, ba, 1) for _ in range(3)]
    p.shutdown(wait=False, cancel_futures=True)
    gate.touch()
    p.shutdown()
    assert blocker.result(timeout=60) is not None
    assert all(f.cancelled() for f in futures)
    settle(base, ["exports"], timeout=1.0)
    ba.append(0)


def _concurrent_pool():
    try:
        return interpool.Pool(WORKERS, concurrency=4)
    except TypeError:
        pytest.skip("Pool has no concurrency option")


def test_release_purges_copies_in_concurrent_pool():
    p = _concurrent_pool()
    try:
        base = counts()
        h = p.share([1, 2, 3])
        assert [p.submit(hd.sum_shared, h).result(timeout=60) for _ in range(10)] == [6] * 10
        assert counts()["shared_copies"] > base["shared_copies"]
        h.release()
        settle(base, ["shared_copies"], timeout=1.0)
    finally:
        p.shutdown()


def test_release_purges_copies_in_another_pool_that_used_the_handle(solo):
    base = counts()
    other = interpool.Pool(1)
    try:
        h = other.share([5])
        assert solo.submit(hd.sum_shared, h).result(timeout=60) == 5
        time.sleep(0.1)   # let solo's worker go back to sleep
        h.release()
        del h
        settle(base, ["shared", "shared_copies"], timeout=1.0)
    finally:
        other.shutdown()
