"""The caller's side: futures resolved by the thread that waits for them,
maps that stream (ordered or not) with a bounded window, and auto-share of
large immutable arguments."""

import asyncio
import concurrent.futures as cf
import gc
import itertools
import sys
import threading

import pytest

import helpers_data as hd
import helpers_stream as hs
import helpers_tasks as ht
import interpool
from interpool._futures import settled
from helpers_util import assert_back_to, counts, wait_until


@pytest.fixture(scope="module")
def pool():
    with interpool.Pool(2) as p:
        yield p


def result_threads():
    return [t for t in threading.enumerate() if t.name.endswith("-results")]


# ------------------------------------------------------------------ futures


def test_result_needs_no_helper_thread():
    with interpool.Pool(1, name="lonely") as p:
        assert [p.submit(ht.square, i).result(60) for i in range(50)] == [i * i for i in range(50)]
        assert not [t for t in result_threads() if t.name.startswith("lonely")]


def test_done_polling_without_result():
    with interpool.Pool(1) as p:
        f = p.submit(ht.square, 3)
        assert wait_until(f.done, 60)   # done() resolves a finished task itself
        assert f.result(0) == 9


def test_callbacks_wait_and_as_completed_without_a_waiter():
    with interpool.Pool(2, name="cb") as p:
        seen = []
        done = threading.Event()
        f = p.submit(ht.square, 4)
        f.add_done_callback(lambda f: (seen.append(f.result()), done.set()))
        assert done.wait(60) and seen == [16]   # nobody called result(): a helper did
        fs = [p.submit(ht.square, i) for i in range(20)]
        finished, pending = cf.wait(fs, timeout=60)
        assert not pending
        assert sorted(f.result() for f in cf.as_completed([p.submit(ht.square, i) for i in range(20)],
                                                        timeout=60)) == sorted(i * i for i in range(20))


def test_callback_waits_for_another_future_of_the_same_pool():
    with interpool.Pool(1) as p:
        out = []
        second = p.submit(ht.square, 5)

        def callback(f):
            out.append(second.result(60))   # resolves it from inside a callback

        first = p.submit(ht.square, 2)
        first.add_done_callback(callback)
        assert first.result(60) == 4
        assert wait_until(lambda: out == [25], 60)


def test_many_threads_wait_on_one_pool():
    with interpool.Pool(2) as p:
        results = {}

        def worker(k):
            results[k] = [p.submit(ht.square, k * 100 + i).result(60) for i in range(50)]

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(results[k] == [(k * 100 + i) ** 2 for i in range(50)] for k in range(6))


def test_result_timeout_then_later_result():
    with interpool.Pool(1) as p:
        f = p.submit(ht.sleep_then_return, 0.5, "late")
        with pytest.raises(TimeoutError):
            f.result(0.01)
        assert f.result(60) == "late"


# ------------------------------------------------------------------ map


@pytest.mark.parametrize("chunksize", [1, 7])
def test_ordered_map_exactly_once_in_order(pool, chunksize):
    assert list(pool.map(hs.jitter, range(300), chunksize=chunksize)) == list(range(300))


@pytest.mark.parametrize("chunksize", [1, 7])
def test_unordered_map_exactly_once(pool, chunksize):
    got = list(pool.map(hs.jitter, range(300), chunksize=chunksize, ordered=False))
    assert sorted(got) == list(range(300))


def test_unordered_on_the_executor_too():
    with interpool.InterpreterPoolExecutor(2) as ex:
        assert sorted(ex.map(hs.jitter, range(100), ordered=False)) == list(range(100))


def test_map_streams_the_first_result(pool, tmp_path):
    """The first next() returns while later tasks still run (shown with a
    release file, not a timing)."""
    release = str(tmp_path / "release")
    it = pool.map(hs.first_then_wait, range(6), [release] * 6)
    assert next(it) == 0   # would hang until release if map held results back
    with open(release, "w"):
        pass
    assert list(it) == [1, 2, 3, 4, 5]


def test_unordered_streams_whatever_finishes(pool, tmp_path):
    release = str(tmp_path / "release")
    it = pool.map(hs.first_then_wait, [3, 0, 5], [release] * 3, ordered=False)
    assert next(it) == 0   # item 0 is second in the input, first to finish
    with open(release, "w"):
        pass
    assert sorted(it) == [3, 5]


@pytest.mark.parametrize("ordered", [True, False])
def test_exception_mid_stream(pool, ordered):
    got = []
    with pytest.raises(ValueError, match="item 50"):
        for x in pool.map(hs.fail_at, range(100), itertools.repeat(50), ordered=ordered):
            got.append(x)
    if ordered:
        assert got == list(range(50))   # every result before the failing one
    assert pool.submit(ht.square, 3).result(60) == 9   # the pool goes on


def test_early_break_cancels_the_rest_and_frees_them(pool):
    baseline = counts()
    for x in pool.map(ht.sleep_then_return, [0.05] * 2000, range(2000)):
        if x == 3:
            break
    gc.collect()
    assert_back_to(baseline)


def test_map_without_buffersize_keeps_a_bounded_window(pool):
    """20,000 tasks: the input is read at once, but only a window of them is
    encoded and queued at a time."""
    seen = []

    def items():
        for i in range(20_000):
            seen.append(i)
            yield i

    it = pool.map(ht.square, items())
    assert len(seen) == 20_000    # read at call time, as the stdlib does
    assert pool._core.queued <= 1024   # but not all queued
    assert sum(it) == sum(i * i for i in range(20_000))


def test_map_buffersize_reads_lazily(pool):
    seen = []

    def items():
        for i in range(100):
            seen.append(i)
            yield i

    it = pool.map(ht.square, items(), buffersize=4)
    assert len(seen) <= 4
    assert list(it) == [i * i for i in range(100)]


def test_map_timeout_still_applies(pool):
    with pytest.raises(TimeoutError):
        list(pool.map(ht.sleep_then_return, [2, 2], [1, 2], timeout=0.05))


# ------------------------------------------------------------------ auto-share


BIG = tuple(tuple(bool((r * c) % 3) for c in range(130)) for r in range(130))


def auto_shared():
    return counts()["auto_shared"]


def test_a_large_immutable_argument_is_sent_once(pool):
    before = auto_shared()
    grid = tuple(tuple(row) for row in BIG)   # a new object
    expect = sum(sum(r) for r in grid)
    assert list(pool.map(hs.total, [grid] * 50, range(50))) == [expect + i for i in range(50)]
    assert auto_shared() == before + 1
    assert pool.submit(hs.total, grid, 1).result(60) == expect + 1   # same object: same entry
    assert auto_shared() == before + 1
    del grid
    assert wait_until(lambda: auto_shared() == before, 30)   # freed when the caller drops it


def test_equal_but_different_objects_are_not_confused(pool):
    a = tuple(range(5000))
    b = tuple(range(1, 5001))
    for _ in range(3):
        assert pool.submit(hs.first_item, a).result(60) == 0
        assert pool.submit(hs.first_item, b).result(60) == 1


def test_mutable_values_are_never_cached(pool):
    before = auto_shared()
    data = list(range(5000))
    assert pool.submit(hs.first_item, data).result(60) == 0
    data[0] = 42
    assert pool.submit(hs.first_item, data).result(60) == 42   # arrives mutated
    holder = (list(range(5000)),)   # a tuple holding a list
    for _ in range(3):
        assert pool.submit(hs.summarize, holder).result(60) == repr(holder)
    holder[0][0] = "changed"
    assert pool.submit(hs.summarize, holder).result(60) == repr(holder)
    assert auto_shared() == before


def test_small_values_are_not_shared(pool):
    before = auto_shared()
    small = tuple(range(10))
    for _ in range(5):
        pool.submit(hs.first_item, small).result(60)
    assert auto_shared() == before


def test_the_cache_is_bounded(pool):
    values = [tuple(range(k, k + 2000)) for k in range(40)]
    for v in values:
        for _ in range(2):
            assert pool.submit(hs.first_item, v).result(60) == v[0]
    assert auto_shared() <= 32
    del values, v
    assert wait_until(lambda: auto_shared() == 0, 30)


@pytest.mark.parametrize("make", [
    lambda: tuple(range(5000)), lambda: "x" * 100_000, lambda: b"y" * 100_000,
    lambda: frozenset(range(5000)),
], ids=["tuple", "str", "bytes", "frozenset"])
def test_a_value_sent_once_is_not_kept_alive(pool, make):
    """The "seen once" record of a large argument holds no reference to it:
    once the caller drops it, it is gone."""
    big = make()
    refs = sys.getrefcount(big)
    assert pool.submit(hs.lengths, big).result(60) == [len(big)]
    for i in range(100):   # ordinary calls after it
        assert pool.submit(hs.lengths, (i,)).result(60) == [1]
    counts()  # deferred releases of the calls' buffers happen here
    assert sys.getrefcount(big) == refs


def test_one_call_never_evicts_what_it_substituted(pool):
    """A call that uses every cached entry and brings a new value on its
    second sighting: the new one travels inline rather than evicting an
    entry whose stand-in is already in the call."""
    values = [bytes([k]) * 5000 for k in range(33)]
    for v in values[:32]:
        for _ in range(2):
            assert pool.submit(hs.first_item, v).result(60) == v[0]
    assert pool.submit(hs.first_item, values[32]).result(60) == 32   # its first sighting
    assert pool.submit(hs.lengths, *values).result(60) == [5000] * 33
    assert pool.submit(hs.lengths, *values).result(60) == [5000] * 33
    del values, v
    assert wait_until(lambda: auto_shared() == 0, 30)


def test_a_large_immutable_item_of_a_tuple_argument_is_sent_once(pool):
    # One-argument front doors (amap, a starmap-style wrapper) get (grid, i).
    before = auto_shared()
    grid = tuple(tuple(row) for row in BIG)
    expect = sum(sum(r) for r in grid)

    async def via_amap():
        return [x async for x in pool.amap(hs.total_of_pair, ((grid, i) for i in range(20)))]

    assert asyncio.run(via_amap()) == [expect + i for i in range(20)]
    assert list(pool.map(hs.total_of_pair, [(grid, i) for i in range(20)])) == [
        expect + i for i in range(20)]
    assert auto_shared() == before + 1
    # ... but never a mutable one
    rows = [list(row) for row in BIG]
    mutable = (rows, 0)
    assert pool.submit(hs.summarize, mutable).result(60) == repr(mutable)
    rows[0][0] = "changed"
    assert pool.submit(hs.summarize, mutable).result(60) == repr(mutable)
    assert auto_shared() == before + 1
    del grid
    assert wait_until(lambda: auto_shared() == before, 30)


def test_auto_share_through_every_front_door():
    grid = tuple(tuple(row) for row in BIG)
    expect = sum(sum(r) for r in grid)

    async def via_asyncio(p):
        got = await asyncio.gather(*(p.run(hs.total, grid, i) for i in range(5)))
        firsts = [x async for x in p.amap(hs.first_item, [grid] * 3)]
        return got, firsts

    with interpool.Pool(2) as p:
        got, firsts = asyncio.run(via_asyncio(p))
        assert got == [expect + i for i in range(5)]
        assert firsts == [grid[0]] * 3
    with interpool.InterpreterPoolExecutor(2) as ex:
        assert list(ex.map(hs.total, [grid] * 5, range(5))) == [expect + i for i in range(5)]
        assert ex.submit(hs.total, grid, 7).result(60) == expect + 7


# ------------------------------------------------------------------ the GC pause
# Batches of results decode with the cyclic GC paused (one young collection
# per batch instead of one per 2,000 new containers).


def documents(n):
    return [{"id": i, "tags": ["a", "b"], "dims": [i, i + 1]} for i in range(n)]


def test_map_leaves_the_gc_on():
    docs = documents(500)
    with interpool.Pool(2) as p:
        assert list(p.map(ht.identity, docs)) == docs
        assert list(p.map(ht.identity, docs, ordered=False, chunksize=8)) != []
        assert gc.isenabled()


def test_batches_keep_a_gc_the_program_turned_off():
    docs = documents(300)
    with interpool.Pool(2) as p:
        gc.disable()
        try:
            assert list(p.map(ht.identity, docs)) == docs
            futures = [p.submit(ht.identity, d) for d in docs]
            cf.wait(futures, timeout=60)   # resolved in batches by the results thread

            async def gathered():
                return await asyncio.gather(*[p.run(ht.identity, d) for d in docs])

            assert asyncio.run(gathered()) == docs
            assert not gc.isenabled()
        finally:
            gc.enable()


def test_callbacks_and_awaiters_run_with_the_gc_on():
    """Only decoding is paused: done-callbacks (run by the batch for sync
    futures) and awaiting code see the GC on."""
    docs = documents(200)
    seen = []
    with interpool.Pool(2) as p:
        futures = [p.submit(ht.identity, d) for d in docs]
        for f in futures:
            f.add_done_callback(lambda _f: seen.append(gc.isenabled()))
        cf.wait(futures, timeout=60)
        wait_until(lambda: len(seen) == len(docs))

        async def gathered():
            async def one(d):
                value = await p.run(ht.identity, d)
                seen.append(gc.isenabled())
                return value
            return await asyncio.gather(*[one(d) for d in docs])

        assert asyncio.run(gathered()) == docs
    assert seen == [True] * (2 * len(docs))


def test_cycles_made_between_batches_are_collected():
    """The GC paused per batch still runs between them: cyclic garbage made
    while a long map streams is collected before the map ends.

    A cycle per result keeps 6,000 tracked objects alive until a collection
    frees them, far past any young-generation threshold; the results
    themselves die by reference count and may never start one."""
    import weakref

    class Node:
        pass

    collected = []
    with interpool.Pool(2) as p:
        for i, value in enumerate(p.map(ht.identity, documents(3000))):
            a, b = Node(), Node()
            a.other, b.other = b, a          # a cycle: only the GC frees it
            weakref.finalize(a, collected.append, i)
            del a, b
        assert collected   # freed by a collection during the map
        assert gc.isenabled()


def test_a_result_that_cannot_be_decoded_fails_only_its_future_in_a_batch():
    with interpool.Pool(2) as p:
        async def gathered():
            runs = [p.run(ht.identity, i) for i in range(50)]
            runs.append(p.run(ht.return_ghost))
            runs += [p.run(ht.identity, i) for i in range(50, 100)]
            return await asyncio.gather(*runs, return_exceptions=True)

        results = asyncio.run(gathered())
        assert isinstance(results.pop(50), ImportError)
        assert results == list(range(100))

        futures = [p.submit(ht.identity, i) for i in range(50)] + [p.submit(ht.return_ghost)]
        cf.wait(futures, timeout=60)
        assert isinstance(futures[-1].exception(0), ImportError)
        assert [f.result(0) for f in futures[:-1]] == list(range(50))
        assert gc.isenabled()


def finished_together(p, calls):
    """Futures of `calls` ((fn, *args) each) whose tasks have all finished,
    none resolved yet: the first resolve takes them as one batch.  A gate
    task holds every worker while they are submitted (a submit resolves
    what has finished by then)."""
    gate = interpool.Queue()
    gates = [p.submit(hd.q_get, gate) for _ in range(p._workers)]
    futures = [p.submit(fn, *args) for fn, *args in calls]
    for _ in gates:
        gate.put(None)
    wait_until(lambda: all(f._handle.finished for f in futures))
    # (settled reads the state without making the lean future's Condition,
    # which Future.done would: the batch then sets these futures from C)
    assert not any(settled(f) for f in futures)
    return futures


def squares(n):
    return [(ht.square, i) for i in range(n)]


def on_done(future, fn):
    """add_done_callback without starting the background resolver (which
    would resolve these futures before the test does, in its own batches)."""
    cf.Future.add_done_callback(future, fn)


def test_a_done_callback_may_wait_for_a_future_of_its_own_batch():
    """A callback runs inside the batch that also holds the other future;
    waiting for it goes on with the batch (it used to wait forever: each
    waits for the other, so whichever the batch resolves first waits)."""
    got = []
    with interpool.Pool(2) as p:
        a, b = finished_together(p, squares(2))
        on_done(a, lambda _f: got.append(("a saw b", b.result(60))))
        on_done(b, lambda _f: got.append(("b saw a", a.result(60))))
        assert (a.result(60), b.result(60)) == (0, 1)
        wait_until(lambda: len(got) == 2)
        assert sorted(got) == [("a saw b", 1), ("b saw a", 0)]


def test_done_callbacks_that_wait_for_every_future_of_the_batch():
    got = []
    with interpool.Pool(2) as p:
        futures = finished_together(p, squares(20))
        for f in futures:
            on_done(f, lambda _f: got.append([g.result(60) for g in futures]))
        assert [f.result(60) for f in futures] == [i * i for i in range(20)]
        wait_until(lambda: len(got) == 20)
        assert got == [[i * i for i in range(20)]] * 20


def test_done_callbacks_that_poll_every_future():
    """A progress callback asking every future done(): each answers what
    it knows and the batch goes on (no nesting per future)."""
    counts_seen = []
    with interpool.Pool(2) as p:
        futures = finished_together(p, squares(2000))
        for f in futures:
            on_done(f, lambda _f: counts_seen.append(sum(g.done() for g in futures)))
        assert [f.result(60) for f in futures] == [i * i for i in range(2000)]
        wait_until(lambda: len(counts_seen) == 2000)
        assert max(counts_seen) == 2000


def test_a_decoding_hook_may_wait_for_a_future_of_its_own_batch():
    """Unpickling code that waits for a future decoded just before it, in
    the same batch, finds it resolved (it used to wait forever)."""
    with interpool.Pool(1) as p:
        futures = finished_together(p, [(ht.square, 3), (ht.return_waits_when_rebuilt,)])
        ht.AWAITED[:] = [futures[0]]
        try:
            assert futures[1].result(60) == ("rebuilt", 9)
        finally:
            ht.AWAITED.clear()


def test_ctrl_c_while_a_result_is_decoded_reaches_the_caller_and_loses_nothing():
    with interpool.Pool(1) as p:
        futures = finished_together(p, [(ht.square, 2), (ht.return_interrupted_when_rebuilt,),
                                        (ht.square, 4)])
        ht.INTERRUPT_ONCE[:] = [1]
        with pytest.raises(KeyboardInterrupt):
            futures[0].result(60)
        assert [f.result(0) for f in futures] == [4, "rebuilt", 16]

        ht.INTERRUPT_ONCE[:] = [1]
        with pytest.raises(KeyboardInterrupt):   # a map stops, as on Ctrl-C
            list(p.map(ht.return_interrupted_when_rebuilt, range(3)))
        ht.INTERRUPT_ONCE.clear()
        assert p.submit(ht.square, 5).result(60) == 25


def test_a_done_callback_raising_keyboard_interrupt_stops_nothing(caplog):
    """Done-callbacks run on the pool's callback thread (no Ctrl-C lands
    there): one that raises KeyboardInterrupt is logged, as concurrent.futures
    logs a failing callback, and the callbacks after it run."""
    def interrupted(_f):
        raise KeyboardInterrupt

    seen = []
    with interpool.Pool(2) as p:
        futures = finished_together(p, squares(10))
        on_done(futures[0], interrupted)
        for f in futures[1:]:
            on_done(f, lambda f: seen.append(f.result()))
        with caplog.at_level("ERROR", logger="concurrent.futures"):
            assert [f.result(60) for f in futures] == [i * i for i in range(10)]
            assert wait_until(lambda: len(seen) == 9 and "KeyboardInterrupt" in caplog.text)
        assert p.submit(ht.square, 5).result(60) == 25   # the pool goes on


def test_an_exception_in_a_done_callback_is_logged_and_the_batch_goes_on(caplog):
    def failing(_f):
        raise ValueError("callback failed")

    with interpool.Pool(2) as p:
        futures = finished_together(p, squares(5))
        on_done(futures[0], failing)
        with caplog.at_level("ERROR", logger="concurrent.futures"):
            assert [f.result(60) for f in futures] == [i * i for i in range(5)]
            assert wait_until(lambda: "callback failed" in caplog.text)


# ------------------------------------------------------------------ completion stress


def test_completions_freed_while_workers_push():
    """Event loops closed (their completions dropped) while workers still
    deliver to them: nothing is used after it is freed (run under
    `make asan` too), and nothing leaks."""
    baseline = counts()
    with interpool.Pool(2) as p:
        for _ in range(100):
            loop = asyncio.new_event_loop()

            async def fire():
                for i in range(10):
                    p.run(ht.square, i)   # never awaited

            loop.run_until_complete(fire())
            loop.close()
        for _ in range(50):
            it = p.map(ht.square, range(50))
            next(it)
            del it   # a map abandoned with results in flight
        assert p.submit(ht.square, 6).result(60) == 36
    gc.collect()
    assert_back_to(baseline)
