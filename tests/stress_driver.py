"""A seeded, randomized driver of interpool's public API, checking invariants.

    tools/python tests/stress_driver.py --duration 60 [--seed N] [--round R]
    make stress SEED=N DURATION=600 BUILD=release|debug|asan

The run is a sequence of rounds.  Each round makes one shared Pool (random
workers, concurrency, recycling) and runs 2-4 scenarios at once, each on its
own thread, the asyncio ones on their own event loop: submit, map
(ordered/unordered, consumed fully, partly or not at all, inside and outside
``with``), amap over sync and async sources (one that idles), ``await
pool.run``, done-callbacks that wait, take a lock, submit follow-ups and call
``wait``/``as_completed``, cancel and cancel(interrupt=True), deadlines,
failing initializers (in a later worker, in a recycled interpreter) racing
with cancels, ``max_tasks_per_worker`` with ``async def`` tasks, share and
release, auto-share (with eviction), Queue, every kind of shutdown, pools
dropped without one, and the drop-in InterpreterPoolExecutor.  Then the
round shuts the shared pool down (a random way) and checks.

Invariants, checked as each scenario goes and at the end of each round:
- every future resolves exactly once (done-callback invocations counted),
  with the right result (tasks compute ``expected(x)``) or the exception
  its story allows: BrokenPool only from a pool that broke, CancelledError
  only where cancel() said True (or a shutdown cancelled), TimeoutError
  only with a deadline, PoolShutdownError only where a shutdown dropped or
  stopped work;
- a map runs every task it was given exactly once when its pool finishes
  its work (stdlib contract), never a task twice;
- no hang: every scenario and every shutdown ends within --hang seconds
  (generous: a round takes a few seconds on a loaded 2-core machine); a
  hang prints every thread's stack;
- ``PoolCore.queued`` and ``Completions.outstanding`` are never negative
  (sampled every few ms) and are 0 once a pool has shut down;
- nothing is printed as "Exception ignored", no thread dies of an
  exception, no done-callback raises (concurrent.futures' log);
- ``_core.live_counts()`` is back to its baseline after every round.

Reproducible: round r of seed S is drawn from ``random.Random(f"{S}/{r}")``
alone, so a failing round replays with ``--seed S --round r`` (the command
is printed).  Thread interleavings are not seeded: a race may need a few
replays, or the whole run again.  Exit status: 0 all held, 1 an invariant
failed, 2 a hang (stacks printed), 3 a usage error.  ``--keep-going``
records failures and goes on (a survey of what fails, and when).

INTERPOOL_STRESS_HUGE: the share of auto-share scenarios that also send two
33 MiB arguments (default 0.05; 0 on a machine short of memory).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import faulthandler
import functools
import gc
import itertools
import logging
import os
import random
import sys
import threading
import time
import traceback
import weakref

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

import helpers_stress as hs  # noqa: E402
import interpool  # noqa: E402
from interpool import _core  # noqa: E402

# Outcomes of a future.
OK, FAILED, CANCELLED, SHUTDOWN, BROKEN, TIMEOUT = (
    "ok", "failed", "cancelled", "shutdown", "broken", "timeout")
ANY_STOP = frozenset({OK, CANCELLED, SHUTDOWN})   # what a cancelling shutdown allows


class InvariantError(Exception):
    """An invariant did not hold; `invariant` names it."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


def check(condition: object, invariant: str, detail: str = "") -> None:
    if not condition:
        if invariant == "no hang":
            detail += "\n" + thread_stacks()
        raise InvariantError(invariant, detail)


def outcome(future) -> tuple[str, object]:
    """(kind, value or exception) of a done future."""
    if future.cancelled():
        return CANCELLED, None
    exc = future.exception()
    if exc is None:
        return OK, future.result()
    if isinstance(exc, interpool.BrokenPool):
        return BROKEN, exc
    if isinstance(exc, interpool.PoolShutdownError):
        return SHUTDOWN, exc
    if isinstance(exc, hs.StressError):
        return FAILED, exc
    if isinstance(exc, TimeoutError):
        return TIMEOUT, exc
    return "unexpected " + type(exc).__name__, exc


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


# ------------------------------------------------------------------ the run


class Run:
    """One driver run: its options, its failures, its watchdog."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.seed = args.seed
        self.duration = args.duration
        self.hang = args.hang
        self.keep_going = args.keep_going
        self.only = set(args.scenarios.split(",")) if args.scenarios else None
        self.first_round = args.round
        self.rounds = args.rounds if args.round is None else 1
        self.plant = args.plant
        self.verbose = args.verbose
        self.build = os.environ.get("INTERPOOL_STRESS_BUILD") or (
            "asan" if os.environ.get("INTERPOOL_ASAN") else
            "debug" if os.environ.get("INTERPOOL_DEBUG") else "release")
        self.start = time.monotonic()
        self.failures: list[tuple[float, int, str, str, str]] = []
        self.lock = threading.Lock()
        self.round: Round | None = None
        self.round_index = -1      # the round being played (or settled)
        self.tainted = False       # a failure left state behind: counts no longer checked
        self.baseline: dict[str, int] = {}
        self.pools: weakref.WeakSet = weakref.WeakSet()   # sampled by the monitor
        self.kinds: set[str] = set()   # invariants that failed so far

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def replay(self, round_index: int | None = None) -> str:
        extra = f" SCENARIOS={','.join(sorted(self.only))}" if self.only else ""
        whole = f"make stress SEED={self.seed} DURATION={self.duration:g} BUILD={self.build}{extra}"
        if round_index is None:
            return whole
        return (f"{whole}\n  this round alone: make stress SEED={self.seed} ROUND={round_index} "
                f"BUILD={self.build}{extra}")

    def record(self, invariant: str, detail: str, scenario: str = "", hang: bool = False) -> None:
        """A failed invariant: print it with the seed and how to replay it;
        without --keep-going, leave now (state may be corrupt: exit hooks
        could hang)."""
        rnd = self.round_index
        with self.lock:
            first = invariant not in self.kinds
            self.kinds.add(invariant)
            self.failures.append((self.elapsed(), rnd, scenario, invariant, detail))
            self.tainted = True
            out = sys.__stdout__
            if sum(f[3] == invariant for f in self.failures) > 3 and self.keep_going:
                return   # (counted, not printed again)
            print(f"\nSTRESS FAILURE after {self.elapsed():.1f}s, round {rnd}"
                  f"{' (' + scenario + ')' if scenario else ''}: {invariant}"
                  f"{'' if first else ' (again)'}", file=out)
            if first or self.verbose:
                print(detail, file=out)
            print(f"seed {self.seed}; replay:\n  {self.replay(rnd)}", file=out, flush=True)
            if not self.keep_going:
                out.flush()
                sys.__stderr__.flush()
                os._exit(2 if hang else 1)


def thread_stacks() -> str:
    """Every Python thread's stack (this interpreter's)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f"--- thread {names.get(ident, '?')} ({ident})\n"
                     + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


class Watchdog:
    """Ends the process, with every thread's stack, if a round outlives its
    budget while the main thread is stuck (the per-scenario deadlines catch
    the other hangs).  faulthandler backs it up for a thread stuck with the
    GIL held."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.deadline = None
        self.cond = threading.Condition()
        threading.Thread(target=self._watch, name="stress-watchdog", daemon=True).start()

    def arm(self, seconds: float) -> None:
        with self.cond:
            self.deadline = time.monotonic() + seconds
            self.cond.notify()
        faulthandler.dump_traceback_later(seconds + 60, exit=True, file=sys.__stderr__)

    def disarm(self) -> None:
        with self.cond:
            self.deadline = None
        faulthandler.cancel_dump_traceback_later()

    def _watch(self) -> None:
        with self.cond:
            while True:
                if self.deadline is None:
                    self.cond.wait()
                    continue
                left = self.deadline - time.monotonic()
                if left > 0:
                    self.cond.wait(left)
                    continue
                self.deadline = None
                self.run.keep_going = False   # a stuck main thread: nothing more to run
                self.run.record("no hang (round watchdog)", thread_stacks(), hang=True)


class Monitor:
    """Samples every live pool's queue and outstanding counts (never
    negative), and reports what the hooks saw.  The hooks only append:
    they may run at the recursion limit, or inside a lock."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.seen: list[tuple[str, object]] = []   # (invariant, what), appended by hooks
        threading.Thread(target=self._loop, name="stress-monitor", daemon=True).start()

    def _loop(self) -> None:
        while True:
            time.sleep(0.005)
            self.report()
            for pool in list(self.run.pools):
                for what, n in counters(pool):
                    if n < 0:
                        self.run.record("counts never negative", f"{pool!r}: {what} = {n}")
            pool = None

    def report(self) -> None:
        while self.seen:
            invariant, what = self.seen.pop(0)
            if hasattr(what, "take"):
                what = what.take()
            elif hasattr(what, "err_msg"):   # sys.unraisablehook's argument
                what = f"{what.err_msg or 'Exception ignored in'}: {what.object!r}\n" + (
                    describe(what.exc_value) if what.exc_value is not None else "")
            elif isinstance(what, logging.LogRecord):
                what = logging.Formatter("%(name)s %(levelname)s: %(message)s").format(what)
            elif not isinstance(what, str):
                what = describe(what)
            self.run.record(invariant, what)


def counters(pool) -> list[tuple[str, int]]:
    """(name, value) of a pool's queue and outstanding counts."""
    out = [("PoolCore.queued", pool._core.queued)]
    completions = pool._state.completions
    if completions is not None:
        out.append(("ThreadCompletions.outstanding", completions.core.outstanding))
    for loop_completions in list(pool._loop_completions.values()):
        out.append(("LoopCompletions.outstanding", loop_completions.core.outstanding))
    return out


def install_hooks(run: Run, monitor: Monitor) -> None:
    """What must never happen anywhere: exceptions ignored, threads dying,
    callbacks raising, tracebacks forwarded from workers."""
    seen = monitor.seen

    def unraisable(u) -> None:
        seen.append(("no exception ignored", u))

    def thread_died(a) -> None:
        if a.thread is None or not a.thread.name.startswith("stress-"):
            seen.append(("no thread dies of an exception", a.exc_value))

    sys.unraisablehook = unraisable
    threading.excepthook = thread_died

    class CallbackErrors(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.CRITICAL and record.args and (
                    "initializer" in str(record.args[0]) or "pool broke" in str(record.args[0])):
                return   # a pool that broke on purpose says why, once
            if record.levelno >= logging.ERROR:
                seen.append(("no done-callback raises", record))

    logger = logging.getLogger("concurrent.futures")
    logger.addHandler(CallbackErrors())
    logger.propagate = False

    class StderrWatch:
        """sys.stderr (where workers' output is forwarded): passes through,
        and a traceback or "Exception ignored" is a failure."""

        def __init__(self, stream) -> None:
            self.stream = stream
            self.tail = ""
            self.flagged = False

        def write(self, text: str) -> int:
            self.stream.write(text)
            self.tail = (self.tail + text)[-16384:]
            if not self.flagged and ("Exception ignored" in self.tail
                                     or "Traceback (most recent" in self.tail):
                self.flagged = True
                seen.append(("nothing printed to stderr", self))   # the rest follows
            return len(text)

        def take(self) -> str:
            time.sleep(0.2)
            text, self.tail, self.flagged = self.tail, "", False
            return text

        def flush(self) -> None:
            self.stream.flush()

        def __getattr__(self, name: str):
            return getattr(self.stream, name)

    sys.stderr = StderrWatch(sys.stderr)


# ------------------------------------------------------------------ a round


class Tracked:
    __slots__ = ("future", "allowed", "want", "label", "calls")

    def __init__(self, future, allowed, want, label) -> None:
        self.future = future
        self.allowed = allowed
        self.want = want
        self.label = label
        self.calls = 0


class Gates:
    """Tasks that hold until released (see helpers_stress)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.started = interpool.SharedBuffer(max(n, 1))
        self.released = interpool.SharedBuffer(max(n, 1))
        self._next = 0

    def take(self, x: int) -> tuple:
        i = self._next
        self._next += 1
        return (self.started, self.released, i, x)

    def release(self, i: int) -> None:
        self.released[i] = 1

    def release_all(self) -> None:
        memoryview(self.released)[:] = b"\x01" * max(self.n, 1)

    def wait_started(self, i: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not self.started[i]:
            if time.monotonic() > end:
                return False
            time.sleep(0.002)
        return True


class Round:
    """What the scenarios of one round share: the pool, the tracker, the
    seed-derived randomness, the deadline."""

    def __init__(self, run: Run, index: int) -> None:
        self.run = run
        self.index = index
        self.rng = random.Random(f"{run.seed}/{index}")
        self.hang = run.hang
        self.lock = threading.Lock()
        self.tracked: list[Tracked] = []
        self.gates: list[Gates] = []
        self.private: list = []     # pools/executors the scenarios made (weak)
        self.marks: list = []       # (marks, n, label) of maps on the shared pool
        self.pool = None

    # -- futures

    def track(self, future, want=None, allowed=frozenset({OK}), label="",
              callback=True) -> Tracked:
        """Check `future` at the end of the round: done exactly once, an
        outcome in `allowed`, and `want` as its value if it succeeded (or
        as the StressError's argument if it failed)."""
        rec = Tracked(future, frozenset(allowed), want, label)
        with self.lock:
            self.tracked.append(rec)
        if callback:
            future.add_done_callback(functools.partial(self._called, rec))
        else:
            rec.calls = -1   # not counted
        return rec

    def _called(self, rec: Tracked, future) -> None:
        with self.lock:
            rec.calls += 1
            calls = rec.calls
        if calls > 1:
            self.run.record("every future resolves exactly once",
                            f"{rec.label}: done-callback called {calls} times")

    def check_done(self, rec: Tracked) -> None:
        kind, value = outcome(rec.future)
        check(kind in rec.allowed, "futures fail only as their story allows",
              f"{rec.label}: {kind}, allowed {sorted(rec.allowed)}"
              + (f"\n{describe(value)}" if isinstance(value, BaseException) else ""))
        if kind == OK and rec.want is not None:
            check(value == rec.want, "results are right",
                  f"{rec.label}: got {value!r:.200}, want {rec.want!r:.200}")
        if kind == FAILED and rec.want is not None:
            check(value.args == (rec.want,), "results are right",
                  f"{rec.label}: raised {value!r}, want StressError({rec.want!r})")

    # -- resources

    def new_gates(self, n: int) -> Gates:
        gates = Gates(n)
        with self.lock:
            self.gates.append(gates)
        return gates

    def watch(self, pool):
        """A pool (or executor) made by a scenario: sampled by the monitor,
        shut down at the end of the round if the scenario did not."""
        inner = pool.pool if isinstance(pool, interpool.InterpreterPoolExecutor) else pool
        self.run.pools.add(inner)
        with self.lock:
            self.private.append(weakref.ref(pool))
        return pool

    def new_pool(self, *args, **kwargs) -> interpool.Pool:
        return self.watch(interpool.Pool(*args, **kwargs))

    def wait_futures(self, futures, what: str) -> None:
        """Every future done within the hang deadline."""
        done, not_done = cf.wait(futures, timeout=self.hang)
        check(not not_done, "no hang", f"{what}: {len(not_done)} of {len(futures)} futures "
              f"not done after {self.hang}s")


# ------------------------------------------------------------------ scenarios
# Each takes (round, rng) and runs on a thread of its own; async ones run
# on an event loop of their own.  They raise InvariantError.

SCENARIOS: dict[str, tuple] = {}


def scenario(weight: float, is_async: bool = False):
    def register(fn):
        SCENARIOS[fn.__name__.removeprefix("sc_")] = (fn, weight, is_async)
        return fn
    return register


def pick_task(rng: random.Random, x: int, gates: Gates | None = None, coroutines: bool = True):
    """(fn, args, want, allowed) of a random task for input x."""
    roll = rng.random()
    if roll < 0.45:
        return hs.compute, (x,), hs.expected(x), {OK}
    if roll < 0.6:
        return hs.fail, (x,), x, {FAILED}
    if roll < 0.72 and coroutines:
        return hs.acompute, (x, rng.choice([0, 0, 0.001, 0.01])), hs.expected(x), {OK}
    if roll < 0.82:
        return hs.spin, (x, rng.choice([0, 0.001, 0.005, 0.02])), hs.expected(x), {OK}
    if roll < 0.88:
        size = rng.randrange(1, 5000)
        return hs.blen, (bytearray(size), x), (size, hs.expected(x)), {OK}
    if gates is not None and gates._next < gates.n:
        fn = hs.agate if coroutines and rng.random() < 0.3 else hs.gate
        return fn, gates.take(x), hs.expected(x), {OK}
    return hs.compute, (x,), hs.expected(x), {OK}


@scenario(3.0)
def sc_submit_mix(rnd: Round, rng: random.Random) -> None:
    """submit/schedule a mix of tasks; cancel, cancel(interrupt=True),
    wait/as_completed/result; callbacks on most."""
    pool = rnd.pool
    n = rng.choice([1, 5, 20, 100, 300])
    gates = rnd.new_gates(n)
    items = []
    for i in range(n):
        fn, args, want, allowed = pick_task(rng, i, gates)
        if rng.random() < 0.2:
            future = pool.schedule(fn, args, timeout=rnd.hang * 2)
        else:
            future = pool.submit(fn, *args)
        items.append([future, fn, want, set(allowed)])
    for item in items:
        future, fn = item[0], item[1]
        roll = rng.random()
        if roll < 0.15:
            if future.cancel():
                item[3] = {CANCELLED}
                check(future.cancelled(), "cancel() is true to its word", "cancel() True, not cancelled")
        elif roll < 0.22 and fn in (hs.gate, hs.agate, hs.spin):
            if future.cancel(interrupt=True):
                item[3] = {CANCELLED}
                check(future.cancelled(), "cancel() is true to its word",
                      "cancel(interrupt=True) True, not cancelled")
    for item in items:
        rnd.track(item[0], item[2], item[3], f"submit_mix {item[1].__name__}",
                  callback=rng.random() < 0.8)
    if rng.random() < 0.5:
        gates.release_all()
    else:
        for i in rng.sample(range(n), n):
            gates.release(i)
    futures = [item[0] for item in items]
    how = rng.choice(["wait", "as_completed", "result", "exception", "none"])
    if how == "wait":
        rnd.wait_futures(futures, "cf.wait")
    elif how == "as_completed":
        seen = set()
        try:
            for f in cf.as_completed(futures, timeout=rnd.hang):
                check(f not in seen, "as_completed yields each future once", repr(f))
                seen.add(f)
        except TimeoutError:
            check(False, "no hang", f"as_completed: {len(seen)} of {len(futures)} after {rnd.hang}s")
    elif how in ("result", "exception"):
        for f in futures:
            try:
                getattr(f, how)(timeout=rnd.hang)
            except TimeoutError:
                if not f.done():
                    check(False, "no hang", f"{how}(timeout) not done after {rnd.hang}s")
            except BaseException:
                pass
    # "none": the round's end waits for them


def within(rnd: Round, fn, invariant: str, what: str):
    """fn() on a thread of its own; its result, or InvariantError if it
    does not return within the hang deadline (with every thread's stack)."""
    box: list = []

    def body() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:   # noqa: BLE001 - handed back
            box.append((False, exc))

    t = threading.Thread(target=body, name="stress-within", daemon=True)
    t.start()
    t.join(rnd.hang)
    if t.is_alive():
        raise InvariantError(invariant, f"{what}: still blocked after {rnd.hang}s\n"
                             + thread_stacks())
    ok, value = box[0]
    if not ok:
        raise value
    return value


def shut(rnd: Round, pool, *args, **kwargs) -> None:
    """pool.shutdown(*args, **kwargs), which must return within the hang
    deadline."""
    within(rnd, lambda: pool.shutdown(*args, **kwargs), "shutdown returns",
           f"{pool!r}.shutdown({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})")


@scenario(1.5)
def sc_callback_lock(rnd: Round, rng: random.Random) -> None:
    """A done-callback takes a lock that this thread holds, while another
    thread calls submit()/result()/done() on the same pool (joblib's
    pattern: callbacks must run with no interpool lock held)."""
    pool = rnd.new_pool(rng.randint(1, 2), concurrency=rng.choice([1, 2]))
    lock = threading.RLock()
    rounds = rng.randint(1, 3)
    gates = rnd.new_gates(rounds)
    try:
        for k in range(rounds):
            started, finished = threading.Event(), threading.Event()
            args = gates.take(k)
            future = pool.submit(hs.gate, *args)

            def callback(f, started=started, finished=finished) -> None:
                started.set()
                with lock:
                    pass
                finished.set()

            rnd.track(future, hs.expected(k), label="gated, its callback takes a lock")
            future.add_done_callback(callback)
            with lock:
                gates.release(args[2])
                check(started.wait(rnd.hang), "no hang", "the done-callback never started")
                # The callback now waits for `lock` (on the thread that resolved it).
                op = rng.choice(["submit_result", "result_timeout", "done", "submit_many"])

                def use_the_pool():
                    if op == "submit_result":
                        return pool.submit(hs.compute, 5).result() == hs.expected(5)
                    if op == "result_timeout":
                        f = pool.submit(hs.compute, 6)
                        try:
                            return f.result(timeout=0.5) == hs.expected(6)
                        except TimeoutError:   # (a slow machine) it kept its timeout
                            return f.result() == hs.expected(6)
                    if op == "done":
                        f = pool.submit(hs.compute, 7)
                        while not f.done():
                            time.sleep(0.001)
                        return f.result() == hs.expected(7)
                    fs = [pool.submit(hs.compute, i) for i in range(rng.randint(2, 50))]
                    return [f.result() for f in fs] == [hs.expected(i) for i in range(len(fs))]

                right = within(rnd, use_the_pool, "callbacks run with no interpool lock held",
                               f"{op} while a done-callback waits for a lock this thread holds")
                check(right, "results are right", op)
            # Once this thread let go of the lock, the callback ends (before
            # the next one, which may run on the same thread, can start).
            check(finished.wait(rnd.hang), "no hang", "the done-callback never took the lock")
    finally:
        gates.release_all()
        shut(rnd, pool, wait=True)


@scenario(1.5)
def sc_callback_chains(rnd: Round, rng: random.Random) -> None:
    """Done-callbacks that submit a follow-up with the same callback."""
    pool = rnd.pool
    chains = rng.choice([1, 10, 100, 500, 2000, 2000])
    depth = rng.randint(1, 4)
    finished = [0]
    all_done = threading.Event()
    lock = threading.Lock()

    def callback(chain: int, step: int, future) -> None:
        if step < depth:
            nxt = pool.submit(hs.compute, chain * 10 + step + 1)
            rnd.track(nxt, hs.expected(chain * 10 + step + 1), label="chain follow-up")
            nxt.add_done_callback(functools.partial(callback, chain, step + 1))
            return
        with lock:
            finished[0] += 1
            if finished[0] == chains:
                all_done.set()

    for chain in range(chains):
        f = pool.submit(hs.compute, chain * 10)
        rnd.track(f, hs.expected(chain * 10), label="chain head")
        f.add_done_callback(functools.partial(callback, chain, 0))
    check(all_done.wait(rnd.hang), "callbacks' follow-up work completes",
          f"{finished[0]} of {chains} chains of depth {depth} finished after {rnd.hang}s")


@scenario(1.5)
def sc_callback_waits(rnd: Round, rng: random.Random) -> None:
    """A done-callback waits for another future of the pool: result(),
    concurrent.futures.wait or as_completed (the other future finishes only
    after the callback started)."""
    concurrency = rng.choice([1, 2])
    pool = rnd.new_pool(2 if concurrency == 1 else rng.randint(1, 2), concurrency=concurrency)
    gates = rnd.new_gates(1)
    try:
        other = pool.submit(hs.gate if concurrency == 1 else hs.agate, *gates.take(2))
        rnd.track(other, hs.expected(2))
        how = rng.choice(["result", "wait", "as_completed"])
        seen: list = []
        finished = threading.Event()

        def callback(f) -> None:
            try:
                gates.release(0)
                if how == "result":
                    seen.append(other.result(timeout=rnd.hang) == hs.expected(2))
                elif how == "wait":
                    done, not_done = cf.wait([other], timeout=rnd.hang)
                    seen.append(other in done)
                else:
                    seen.append(list(cf.as_completed([other], timeout=rnd.hang)) == [other])
            except TimeoutError:
                seen.append(False)
            finally:
                finished.set()

        first = pool.submit(hs.compute, 1)
        rnd.track(first, hs.expected(1))
        if rng.random() < 0.5:
            time.sleep(rng.choice([0, 0.001, 0.01]))
        first.add_done_callback(callback)
        check(finished.wait(rnd.hang * 1.5), "no hang", "the waiting callback never ended")
        check(seen == [True], "a callback sees other futures finish",
              f"{how}() inside a done-callback did not see the other future finish within "
              f"{rnd.hang}s (it finished: {other.done()})")
    finally:
        gates.release_all()
        shut(rnd, pool, wait=True)


@scenario(1.2)
def sc_cancel_wakes(rnd: Round, rng: random.Random) -> None:
    """cancel() of a queued future wakes a thread blocked on it, with every
    worker busy (no other task finishes meanwhile)."""
    workers = rng.randint(1, 2)
    concurrency = rng.choice([1, 1, 2])
    pool = rnd.new_pool(workers, concurrency=concurrency)
    slots = workers * concurrency
    gates = rnd.new_gates(slots)
    try:
        # Every slot busy (coroutines when a worker runs several at once,
        # so that each starts), so the next task stays queued.
        blocker = hs.gate if concurrency == 1 else hs.agate
        blockers = [pool.submit(blocker, *gates.take(i)) for i in range(slots)]
        for i, b in enumerate(blockers):
            rnd.track(b, hs.expected(i))
        for i in range(slots):
            check(gates.wait_started(i, rnd.hang), "no hang", "a gated task never started")
        queued = pool.submit(hs.compute, 9)
        rnd.track(queued, allowed={CANCELLED}, callback=rng.random() < 0.5)
        how = rng.choice(["result", "exception", "wait", "as_completed"])
        woke: list = []

        def waiter() -> None:
            try:
                if how == "result":
                    queued.result()
                elif how == "exception":
                    queued.exception()
                elif how == "wait":
                    cf.wait([queued])
                else:
                    list(cf.as_completed([queued]))
                woke.append("returned")
            except cf.CancelledError:
                woke.append("cancelled")
            except BaseException as exc:   # noqa: BLE001 - reported
                woke.append(describe(exc))

        t = threading.Thread(target=waiter, name="stress-waiter", daemon=True)
        t.start()
        time.sleep(rng.choice([0, 0.001, 0.02]))
        check(queued.cancel(), "cancel() of a queued task succeeds", "cancel() returned False")
        t.join(rnd.hang)
        check(not t.is_alive(), "cancel() wakes the threads waiting on the future",
              f"a thread blocked in {how}() was not woken by cancel() within {rnd.hang}s "
              f"(every worker still busy)")
        want = ["returned"] if how in ("wait", "as_completed") else ["cancelled"]
        check(woke == want, "futures fail only as their story allows", f"{how}: {woke}")
    finally:
        gates.release_all()
        shut(rnd, pool, wait=True)


@scenario(1.2, is_async=True)
async def sc_amap_idle_source(rnd: Round, rng: random.Random) -> None:
    """amap over an async source that yields a few items, then idles until
    their results arrived (a socket with no new messages)."""
    pool = rnd.pool
    batches = [rng.randint(1, 6) for _ in range(rng.randint(1, 3))]
    got: list[int] = []
    arrived = asyncio.Event()
    want_total = [0]

    async def source():
        x = 0
        for size in batches:
            want_total[0] += size
            for _ in range(size):
                yield x
                x += 1
            await arrived.wait()   # idle until the consumer has them all
            arrived.clear()

    try:
        async with asyncio.timeout(rnd.hang):
            async for r in pool.amap(hs.compute, source(), ordered=rng.random() < 0.7,
                                     window=rng.choice([None, 1, 4, 16, 64])):
                got.append(r)
                if len(got) == want_total[0]:
                    arrived.set()
    except TimeoutError:
        check(False, "amap yields ready results while its source idles",
              f"{len(got)} results after {rnd.hang}s; the source yielded {want_total[0]} "
              f"then waited (batches {batches})")
    check(sorted(got) == [hs.expected(x) for x in range(sum(batches))], "results are right",
          f"amap gave {got}")


@scenario(2.0, is_async=True)
async def sc_amap_mix(rnd: Round, rng: random.Random) -> None:
    """amap over sync and async sources, ordered or not, consumed fully or
    left early."""
    pool = rnd.pool
    n = rng.choice([0, 1, 10, 100, 500])
    fn = rng.choice([hs.compute, hs.compute, hs.acompute])
    poison = rng.randrange(n) if n and rng.random() < 0.2 else -1
    ordered = rng.random() < 0.6
    stop_after = rng.choice([None, None, 0, 1, n // 2])

    async def asource():
        for x in range(n):
            if rng.random() < 0.1:
                await asyncio.sleep(0)
            yield x

    items = range(n) if rng.random() < 0.5 else asource()
    if poison >= 0:
        fn = hs.compute_unless_poison
        poison = hs.POISON if n > hs.POISON else -1
    got: list = []
    try:
        async with asyncio.timeout(rnd.hang):
            agen = pool.amap(fn, items, ordered=ordered, window=rng.choice([None, 1, 3, 32]))
            try:
                async for r in agen:
                    got.append(r)
                    if stop_after is not None and len(got) >= stop_after:
                        break
            finally:
                await agen.aclose()
    except TimeoutError:
        check(False, "no hang", f"amap of {n} items: {len(got)} results after {rnd.hang}s")
    except hs.StressError as exc:
        check(poison >= 0 and exc.args == (poison,), "results are right", f"amap raised {exc!r}")
    want = [hs.expected(x) for x in range(n)]
    if ordered:
        check(got == want[:len(got)], "results are right", f"ordered amap gave {got[:20]}...")
    else:
        check(set(got) <= set(want) and len(set(got)) == len(got), "results are right",
              f"unordered amap gave {got[:20]}...")
    if stop_after is None and poison < 0:
        check(len(got) == n, "results are right", f"amap of {n} gave {len(got)}")


@scenario(2.0, is_async=True)
async def sc_run_mix(rnd: Round, rng: random.Random) -> None:
    """await pool.run: gathered, in a TaskGroup, cancelled by a timeout or
    task.cancel(), with pool.as_completed."""
    pool = rnd.pool
    n = rng.choice([1, 10, 100])
    gates = rnd.new_gates(n)
    futures = []
    for i in range(n):
        fn, args, want, allowed = pick_task(rng, i, gates)
        fut = pool.run(fn, *args)
        futures.append((fut, want, set(allowed)))
    how = rng.choice(["gather", "taskgroup", "timeout", "cancel", "as_completed"])
    if how in ("timeout", "cancel"):
        for fut, want, allowed in futures:
            allowed.add(CANCELLED)
    recs = [rnd.track(fut, want, allowed, f"pool.run ({how})", callback=rng.random() < 0.8)
            for fut, want, allowed in futures]
    if how not in ("timeout", "cancel") or rng.random() < 0.5:
        gates.release_all()   # (else only the cancellation ends them)
    try:
        async with asyncio.timeout(rnd.hang):
            if how == "gather":
                await asyncio.gather(*(f for f, _, _ in futures), return_exceptions=True)
            elif how == "taskgroup":
                try:
                    async with asyncio.TaskGroup() as tg:
                        for f, _, _ in futures:
                            tg.create_task(f)
                except BaseExceptionGroup:
                    pass
                for rec in recs:
                    rec.allowed |= {CANCELLED}   # a failing sibling cancels the rest
            elif how == "timeout":
                try:
                    async with asyncio.timeout(rng.choice([0, 0.001, 0.05])):
                        await asyncio.gather(*(f for f, _, _ in futures))
                except (TimeoutError, hs.StressError):
                    pass
            elif how == "cancel":
                tasks = [asyncio.create_task(f) for f, _, _ in futures]
                await asyncio.sleep(rng.choice([0, 0.001, 0.01]))
                for t in rng.sample(tasks, len(tasks) // 2):
                    t.cancel()
                gates.release_all()
                await asyncio.gather(*tasks, return_exceptions=True)
            else:
                async for f in pool.as_completed([f for f, _, _ in futures]):
                    try:
                        await f
                    except hs.StressError:
                        pass
            gates.release_all()
            await asyncio.gather(*(f for f, _, _ in futures), return_exceptions=True)
            for _ in range(3):
                await asyncio.sleep(0)   # done-callbacks run
    except TimeoutError:
        check(False, "no hang", f"pool.run ({how}): not done after {rnd.hang}s")
    finally:
        gates.release_all()


def _map_target(rnd: Round, rng: random.Random, inside_with: bool):
    kind = rng.choice(["shared", "pool", "pool", "executor", "executor"])
    if kind == "shared" and not inside_with:
        return rnd.pool, "shared"
    workers = rng.randint(1, 3)
    if kind == "executor":
        return rnd.watch(interpool.InterpreterPoolExecutor(workers)), "executor"
    return rnd.new_pool(workers, concurrency=rng.choice([1, 1, 2])), "pool"


@scenario(3.0)
def sc_map_mix(rnd: Round, rng: random.Random) -> None:
    """map (ordered or not, chunked, bounded) consumed fully, partly or not
    at all, inside and outside `with`; every task must run once."""
    inside_with = rng.random() < 0.5
    target, kind = _map_target(rnd, rng, inside_with)
    n = rng.choice([0, 1, 10, 100, 500, 3000])
    chunksize = rng.choice([1, 1, 1, 7, 64])
    buffersize = rng.choice([None, None, None, 1, 16])
    ordered = rng.random() < 0.6
    poison = rng.randrange(n) if n and rng.random() < 0.15 else -1
    # (With buffersize the input is read lazily: after the `with` block
    # the rest cannot be submitted, as with the stdlib.)
    consume = rng.choice(["all", "part", "none", "after_with"]
                         if inside_with and buffersize is None else ["all", "part", "none"])
    marks = interpool.SharedBuffer(max(n, 1))
    label = (f"map({kind}, n={n}, chunksize={chunksize}, buffersize={buffersize}, "
             f"ordered={ordered}, poison={poison}, consume={consume}, with={inside_with})")
    kwargs = {"chunksize": chunksize}
    if buffersize is not None:
        kwargs["buffersize"] = buffersize
    if not ordered:
        if kind == "executor":
            ordered = True
        else:
            kwargs["ordered"] = False
    got: list = []
    raised: list = []

    def consume_some(it, limit) -> None:
        try:
            for r in it:
                got.append(r)
                if limit is not None and len(got) >= limit:
                    break
        except hs.StressError as exc:
            raised.append(exc)

    def start():
        it = target.map(hs.mark_or_fail, [marks] * n, range(n), range(n), [poison] * n, **kwargs)
        if consume == "all":
            consume_some(it, None)
        elif consume == "part":
            consume_some(it, rng.randint(0, max(n // 2, 1)))
            it.close()
        return it

    if inside_with:
        with target:
            it = start()
    else:
        it = start()
        if kind != "shared":
            shut(rnd, target, wait=True)
    if consume == "after_with":
        try:
            consume_some(it, None)
        except RuntimeError as exc:
            check(False, "a map's results outlive its `with` block", f"{label}: {describe(exc)}")
    want = [hs.expected(x) for x in range(n)]
    if raised:
        check(poison >= 0 and raised[0].args == (poison,), "results are right",
              f"{label}: raised {raised[0]!r}")
    if ordered:
        check(got == want[:len(got)], "results are right", f"{label}: got {got[:10]}...")
    else:
        check(len(set(got)) == len(got) and set(got) <= set(want), "results are right",
              f"{label}: got {got[:10]}...")
    if consume in ("all", "after_with") and poison < 0:
        check(len(got) == n, "a map yields every result", f"{label}: {len(got)} of {n} results")
    if kind == "shared":
        with rnd.lock:
            rnd.marks.append((marks, n, label))   # checked once the pool finished
        del it
        return
    counts = bytes(memoryview(marks))[:n]
    twice = [i for i, c in enumerate(counts) if c > 1]
    check(not twice, "no task runs twice", f"{label}: tasks {twice[:10]} ran more than once")
    if buffersize is None and consume in ("none", "after_with", "all"):
        # The stdlib contract: map() takes the whole input at the call and
        # every task runs (unless the caller leaves the loop early).
        missing = counts.count(0)
        check(missing == 0 or (consume == "all" and raised), "a map runs every task it was given",
              f"{label}: {missing} of {n} tasks never ran")
    del it


@scenario(1.5)
def sc_break_cancel(rnd: Round, rng: random.Random) -> None:
    """A pool breaks (its initializer fails in a later worker or in a
    recycled interpreter) while the caller cancels queued futures."""
    workers = rng.choice([1, 2, 2, 3])
    concurrency = rng.choice([1, 2, 2, 4])
    max_tasks = rng.choice([None, None, rng.randint(1, 200)])
    tokens = interpool.Queue()
    ntokens = rng.randint(0, workers - 1) if max_tasks is None else rng.randint(workers, workers + 3)
    for _ in range(ntokens):
        tokens.put(1)
    release = interpool.SharedBuffer(1)
    pool = rnd.new_pool(workers, concurrency=concurrency, initializer=hs.init_tokens,
                        initargs=(tokens, release), max_tasks_per_worker=max_tasks)
    n = rng.choice([100, 1000, 5000, 20000, 30000])
    label = (f"Pool({workers}, concurrency={concurrency}, max_tasks_per_worker={max_tasks}), "
             f"{ntokens} initializers succeed, {n} tasks")
    futures = []
    try:
        for i in range(n):
            futures.append(pool.submit(hs.compute, i))
    except interpool.BrokenPool:
        pass   # (cannot happen before `release`; kept for safety)
    said: dict[int, bool] = {}
    order = list(range(len(futures)))
    if rng.random() < 0.7:
        order.reverse()
    else:
        rng.shuffle(order)
    release_at = rng.randint(0, max(len(order) // 4, 1))
    callbacks = rng.random() < 0.5
    lock = threading.Lock()

    def canceller(part: list[int], releases: bool) -> None:
        for k, i in enumerate(part):
            if releases and k == release_at:
                release[0] = 1
            ok = futures[i].cancel()
            with lock:
                said[i] = ok
        if releases:
            release[0] = 1

    nthreads = rng.choice([1, 1, 2])
    parts = [order[k::nthreads] for k in range(nthreads)]
    for i, f in enumerate(futures):
        if callbacks and i % 3 == 0:
            rnd.track(f, hs.expected(i), {OK, BROKEN, CANCELLED}, label)
    threads = [threading.Thread(target=canceller, args=(p, k == 0), name="stress-canceller",
                                daemon=True) for k, p in enumerate(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(rnd.hang)
        check(not t.is_alive(), "no hang", f"{label}: cancel() blocked")
    release[0] = 1
    within(rnd, lambda: pool.shutdown(wait=True), "shutdown returns",
           f"{label}: shutdown(wait=True) (queued={pool._core.queued}, "
           f"live workers={pool._core.live_workers})")
    for what, value in counters(pool):
        check(value == 0, "counts are 0 once a pool has shut down", f"{label}: {what} = {value}")
    broke = pool._core.broken is not None
    for i, f in enumerate(futures):
        check(f.done(), "every future resolves", f"{label}: future {i} not done after shutdown")
        kind, value = outcome(f)
        if said.get(i):
            check(kind == CANCELLED, "cancel() is true to its word", f"{label}: {i}: {kind}")
        allowed = {OK, CANCELLED} | ({BROKEN} if broke else set())
        check(kind in allowed, "futures fail only as their story allows",
              f"{label}: future {i}: {kind} (pool broken: {broke})")
        if kind == OK:
            check(value == hs.expected(i), "results are right", f"{label}: {i}: {value}")


@scenario(1.2)
def sc_recycle_async(rnd: Round, rng: random.Random) -> None:
    """concurrency > 1 with max_tasks_per_worker: a shutdown finishes every
    queued async task."""
    workers = rng.randint(1, 2)
    pool = rnd.new_pool(workers, concurrency=rng.randint(2, 4),
                        max_tasks_per_worker=rng.randint(1, 3))
    n = rng.randint(2, 16)
    futures = []
    for i in range(n):
        if rng.random() < 0.8:
            f = pool.submit(hs.acompute, i, rng.choice([0, 0.01, 0.05, 0.2]))
        else:
            f = pool.submit(hs.compute, i)
        rnd.track(f, hs.expected(i), label="recycling pool with coroutines",
                  callback=rng.random() < 0.5)
        futures.append(f)
    if rng.random() < 0.5:
        shut(rnd, pool, wait=True)
    else:
        shut(rnd, pool, wait=False)
        rnd.wait_futures(futures, "shutdown(wait=False) of a recycling pool")
        shut(rnd, pool, wait=True)
    for f in futures:
        check(f.done(), "every future resolves", "shutdown(wait=True) returned with work pending")


@scenario(1.5)
def sc_auto_share(rnd: Round, rng: random.Random) -> None:
    """Large immutable arguments passed again and again (auto-share): many
    distinct ones (eviction), many in one call, once or twice in a row."""
    pool = rnd.pool
    k = rng.choice([3, 20, 36, 40, 60, 60])

    def big(j: int):
        # Around auto-share's threshold (4 KiB encoded, counted cheaply as a
        # byte per scalar), mostly above it.
        kind = rng.choice(["tuple", "str", "bytes", "nested", "frozenset"])
        size = rng.choice([3000, 5000, 9000])
        if kind == "tuple":
            return tuple(range(j * 100000, j * 100000 + size))
        if kind == "str":
            return f"{j:06d}" + "x" * size
        if kind == "bytes":
            return bytes([j % 256]) * size
        if kind == "frozenset":
            return frozenset(range(j * 100000, j * 100000 + size))
        return tuple((j, i, "y" * 20) for i in range(size // 20))

    objects = [big(j) for j in range(k)]

    def call(args: tuple, kwargs: dict, what: str) -> None:
        if rng.random() < 0.15:
            args = (tuple(args),)   # items of a tuple argument
        try:
            f = pool.submit(hs.sizes, *args, **kwargs)
        except BaseException as exc:
            check(False, "auto-share never refuses a call",
                  f"{what} ({len(args)} arguments, {len(kwargs)} keywords; {k} distinct large "
                  f"values in all): {describe(exc)}")
        rnd.track(f, hs.sizes(*args, **kwargs), label=f"auto-share: {what}",
                  callback=rng.random() < 0.3)

    for c in range(rng.randint(5, 80)):
        roll = rng.random()
        if roll < 0.35:   # the same value twice in a row: promoted
            obj = rng.choice(objects)
            call((obj,), {}, "one value, twice")
            call((obj,), {}, "one value, twice")
        elif roll < 0.55:
            call((rng.choice(objects),), {}, "one value")
        elif roll < 0.8:   # many distinct values in one call
            m = rng.randint(min(k, 32), k)
            call(tuple(rng.sample(objects, m)), {}, f"{m} distinct values")
        else:
            args = tuple(rng.choice(objects) for _ in range(rng.randint(1, 5)))
            kwargs = {f"k{i}": rng.choice(objects) for i in range(rng.choice([0, 1, 3]))}
            call(args, kwargs, "a few values")
    if rng.random() < float(os.environ.get("INTERPOOL_STRESS_HUGE", "0.05")):
        # Two arguments whose encodings exceed the cache's byte budget.
        a, b = "a" * (33 << 20), "b" * (33 << 20)
        for _ in range(2):
            try:
                f = pool.submit(hs.sizes, a, b)
            except BaseException as exc:
                check(False, "auto-share never refuses a call",
                      f"two 33 MiB arguments: {describe(exc)}")
            check(f.result(timeout=rnd.hang) == hs.sizes(a, b), "results are right",
                  "two 33 MiB arguments")


@scenario(1.2)
def sc_deadlines(rnd: Round, rng: random.Random) -> None:
    """schedule(timeout=) and Pool(task_timeout=): a task that outlives its
    deadline fails with TimeoutError, one well within it succeeds."""
    private = rng.random() < 0.4
    timeout = rng.choice([0.01, 0.05, 0.2])
    if private:
        pool = rnd.new_pool(rng.randint(1, 2), concurrency=rng.choice([1, 2]), task_timeout=timeout)
    else:
        pool = rnd.pool
    futures = []
    for i in range(rng.randint(1, 12)):
        roll = rng.random()
        if roll < 0.4:
            fn, args, allowed = hs.spin, (i, None), {TIMEOUT}   # runs until stopped
        elif roll < 0.55:
            fn, args, allowed = hs.acompute, (i, 60), {TIMEOUT}
        else:
            fn, args, allowed = hs.compute, (i,), {OK}
        if private:
            f = pool.submit(fn, *args) if allowed == {TIMEOUT} or rng.random() < 0.5 else \
                pool.schedule(fn, args, timeout=rnd.hang)
        else:
            f = pool.schedule(fn, args, timeout=timeout if allowed == {TIMEOUT} else rnd.hang)
        if allowed == {OK} and private:
            allowed = {OK, TIMEOUT}   # the pool's short deadline holds for it too, under load
        rnd.track(f, hs.expected(i), allowed, f"deadline {fn.__name__}")
        futures.append(f)
    rnd.wait_futures(futures, "tasks with deadlines")
    if private:
        shut(rnd, pool, wait=rng.random() < 0.7)


@scenario(1.0)
def sc_share_release(rnd: Round, rng: random.Random) -> None:
    """share() a value, use it from many tasks, release it (before or
    after they ran); a released handle is refused at the call."""
    pool = rnd.pool
    value = rng.choice([tuple(range(rng.randint(1, 5000))), "s" * rng.randint(1, 100000),
                        list(range(rng.randint(1, 3000)))])
    handle = pool.share(value)
    futures = []
    for i in range(rng.randint(1, 50)):
        f = pool.submit(hs.with_shared, handle, i)
        rnd.track(f, hs.with_shared(value, i), label="shared value")
        futures.append(f)
    if rng.random() < 0.5:
        rnd.wait_futures(futures, "tasks of a shared value")
    handle.release()
    try:
        pool.submit(hs.with_shared, handle, 0)
    except ValueError:
        pass
    else:
        check(False, "a released handle is refused at the call", "submit() accepted it")


@scenario(1.0)
def sc_queue_flow(rnd: Round, rng: random.Random) -> None:
    """Items through interpool.Queue, caller to workers and back: each
    arrives once."""
    pool = rnd.pool
    inbox = interpool.Queue(maxsize=rng.choice([0, 1, 10]))
    outbox = interpool.Queue()
    movers = rng.randint(1, 2)
    per = rng.randint(1, 200)
    futures = [pool.submit(hs.queue_echo, inbox, outbox, per) for _ in range(movers)]
    for f in futures:
        rnd.track(f, per, label="queue mover")
    for x in range(movers * per):
        inbox.put(x, timeout=rnd.hang)
    got = sorted(outbox.get(timeout=rnd.hang) for _ in range(movers * per))
    check(got == sorted(hs.expected(x) for x in range(movers * per)), "queue items arrive once",
          f"{len(got)} items")
    check(outbox.qsize() == 0, "queue items arrive once", f"{outbox.qsize()} extra")


@scenario(1.5)
def sc_shutdown_mix(rnd: Round, rng: random.Random) -> None:
    """A private pool with queued, running and gated work, shut down every
    way (from this thread or another, twice at once)."""
    workers = rng.randint(1, 3)
    pool = rnd.new_pool(workers, concurrency=rng.choice([1, 2]))
    n = rng.choice([1, 10, 100])
    gates = rnd.new_gates(n)
    cancel_futures = rng.random() < 0.4
    interrupt = rng.random() < 0.3
    wait = rng.random() < 0.7
    stopping = cancel_futures or interrupt
    futures = []
    for i in range(n):
        fn, args, want, allowed = pick_task(rng, i, gates)
        f = pool.submit(fn, *args)
        allowed = set(allowed)
        if stopping:
            allowed |= {CANCELLED, SHUTDOWN}
        if interrupt:
            allowed |= {CANCELLED}
        rnd.track(f, want, allowed, f"shutdown(wait={wait}, cancel_futures={cancel_futures}, "
                  f"interrupt={interrupt}) {fn.__name__}", callback=rng.random() < 0.7)
        futures.append(f)
    if not interrupt:
        gates.release_all()   # else nothing would stop them
    twice = rng.random() < 0.3
    threads = []
    for _ in range(2 if twice else 1):
        t = threading.Thread(target=pool.shutdown, args=(wait,),
                             kwargs={"cancel_futures": cancel_futures, "interrupt": interrupt},
                             name="stress-shutdown", daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(rnd.hang)
        check(not t.is_alive(), "shutdown returns", "shutdown() did not return\n" + thread_stacks())
    try:
        pool.submit(hs.compute, 1)
    except RuntimeError:
        pass
    else:
        check(False, "submit after shutdown raises RuntimeError", "it did not")
    gates.release_all()
    rnd.wait_futures(futures, "work of a pool shut down")
    if wait:
        shut(rnd, pool, wait=True)
        for what, value in counters(pool):
            check(value == 0, "counts are 0 once a pool has shut down", f"{what} = {value}")


@scenario(1.0)
def sc_dropped_pool(rnd: Round, rng: random.Random) -> None:
    """A pool dropped without shutdown finishes its queued work."""
    pool = interpool.Pool(rng.randint(1, 2), concurrency=rng.choice([1, 2]))
    rnd.run.pools.add(pool)
    futures = []
    for i in range(rng.choice([0, 1, 20, 200])):
        f = pool.submit(rng.choice([hs.compute, hs.acompute]), i)
        rnd.track(f, hs.expected(i), label="dropped pool", callback=rng.random() < 0.5)
        futures.append(f)
    if rng.random() < 0.3:
        it = pool.map(hs.compute, range(50))
        got = [next(it) for _ in range(rng.randint(0, 10))]
        check(got == [hs.expected(x) for x in range(len(got))], "results are right", str(got))
        del it
    del pool
    gc.collect()
    rnd.wait_futures(futures, "work of a dropped pool")


@scenario(1.2)
def sc_executor_mix(rnd: Round, rng: random.Random) -> None:
    """The drop-in InterpreterPoolExecutor: submit, map, with, shutdown."""
    ex = rnd.watch(interpool.InterpreterPoolExecutor(
        rng.randint(1, 3), max_tasks_per_worker=rng.choice([None, None, 50])))
    n = rng.choice([1, 20, 100])
    futures, recs = [], []
    for i in range(n):
        fn = rng.choice([hs.compute, hs.compute, hs.fail, hs.acompute])
        f = ex.submit(fn, i)
        recs.append(rnd.track(f, i if fn is hs.fail else hs.expected(i),
                              {FAILED} if fn is hs.fail else {OK}, f"executor {fn.__name__}"))
        futures.append(f)
    if rng.random() < 0.5:
        got = list(ex.map(hs.compute, range(n)))
        check(got == [hs.expected(x) for x in range(n)], "results are right", str(got[:10]))
    cancel = rng.random() < 0.3
    if cancel:
        for rec in recs:
            rec.allowed = rec.allowed | {CANCELLED, SHUTDOWN}   # (running coroutines too)
    shut(rnd, ex, wait=True, cancel_futures=cancel)
    rnd.wait_futures(futures, "executor work")


@scenario(0.8)
def sc_init_fail(rnd: Round, rng: random.Random) -> None:
    """A pool whose initializer fails (at once, in a later worker, or in a
    recycled interpreter): BrokenPool for what did not run, never a hang."""
    workers = rng.randint(1, 3)
    tokens = interpool.Queue()
    for _ in range(rng.randint(0, workers)):
        tokens.put(1)
    release = interpool.SharedBuffer(1)
    release[0] = 1
    pool = rnd.new_pool(workers, initializer=hs.init_tokens, initargs=(tokens, release),
                        concurrency=rng.choice([1, 2]),
                        max_tasks_per_worker=rng.choice([None, 1, 3]))
    futures = []
    for i in range(rng.choice([1, 10, 100])):
        try:
            f = pool.submit(hs.compute, i)
        except interpool.BrokenPool:
            check(pool._core.broken is not None, "BrokenPool only from a pool that broke")
            break
        futures.append(f)
        rnd.track(f, hs.expected(i), {OK, BROKEN}, "pool with a failing initializer",
                  callback=rng.random() < 0.5)
    rnd.wait_futures(futures, "work of a pool whose initializer fails")
    if any(f.exception() is not None for f in futures):
        check(pool._core.broken is not None, "BrokenPool only from a pool that broke",
              "a future failed with BrokenPool, the pool is not broken")
    try:
        pool.wait_ready(rnd.hang)
    except interpool.BrokenPool:
        pass
    shut(rnd, pool, wait=True)


@scenario(0.0)
def sc_planted(rnd: Round, rng: random.Random) -> None:
    """--plant KIND: a bug planted in the driver's own view, to show that
    the invariants catch it (tests/test_stress.py)."""
    kind = rnd.run.plant
    if kind == "lost":
        rnd.track(cf.Future(), 1, label="planted: a future nobody resolves")
    elif kind == "wrong":
        rnd.track(rnd.pool.submit(hs.compute, 1), hs.expected(2), label="planted: wrong result")
    elif kind == "hang":
        threading.Event().wait()
    elif kind == "negative":
        class Fake:
            _core = type("C", (), {"queued": -1})()
            _state = type("S", (), {"completions": None})()
            _loop_completions: dict = {}
        fake = Fake()
        rnd.run.pools.add(fake)
        time.sleep(1)


# ------------------------------------------------------------------ driving


def run_thread(rnd: Round, name: str, fn, is_async: bool, rng: random.Random):
    def body() -> None:
        try:
            if is_async:
                factory = None
                if rng.random() < 0.2:
                    try:
                        import uvloop
                        factory = uvloop.new_event_loop
                    except ImportError:
                        pass
                asyncio.run(fn(rnd, rng), loop_factory=factory)
            else:
                fn(rnd, rng)
        except InvariantError as exc:
            rnd.run.record(exc.invariant, exc.detail, name)
        except BaseException as exc:   # noqa: BLE001 - a scenario must not raise
            rnd.run.record("no unexpected exception", describe(exc), name)

    t = threading.Thread(target=body, name=f"stress-{name}", daemon=True)
    t.start()
    return t


def join_or_record(rnd: Round, threads: list[tuple[str, threading.Thread]], deadline: float) -> bool:
    ok = True
    for name, t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            ok = False
            rnd.run.record("no hang", f"scenario {name} still runs after {rnd.hang * 3}s\n"
                           + thread_stacks(), name, hang=True)
    return ok


def shared_pool(rnd: Round) -> tuple[interpool.Pool, str]:
    rng = rnd.rng
    options = {
        "concurrency": rng.choice([1, 1, 2, 4]),
        # (A fresh interpreter costs ~0.1 s of CPU: small budgets are for
        # the scenarios that aim at recycling, with few tasks.)
        "max_tasks_per_worker": rng.choice([None, None, None, 200, 2000]),
    }
    workers = rng.randint(1, 3)
    pool = interpool.Pool(workers, **options)
    rnd.run.pools.add(pool)
    return pool, f"Pool({workers}, {', '.join(f'{k}={v}' for k, v in options.items())})"


def choose(run: Run, rnd: Round) -> list[str]:
    """The scenarios of round r: the first rounds go through every kind (in
    a seeded order), then a weighted draw."""
    names = [n for n in SCENARIOS if SCENARIOS[n][1] > 0 and (run.only is None or n in run.only)]
    if run.plant:
        return ["planted"] + names[:1]
    rng = rnd.rng
    count = rng.randint(2, 4) if len(names) > 1 else 1
    order = random.Random(f"{run.seed}/order").sample(names, len(names))
    start = rnd.index * 3
    picks = [order[(start + k) % len(order)] for k in range(3)] if start < len(order) else []
    weights = [SCENARIOS[n][1] for n in names]
    while len(picks) < count:
        picks.append(rng.choices(names, weights)[0])
    return picks


def finish_round(rnd: Round) -> None:
    """Shut the shared pool down (a random way), then check every tracked
    future and the pools' counters."""
    rng = rnd.rng
    pool = rnd.pool
    for gates in rnd.gates:
        gates.release_all()
    how = rng.choice(["wait", "wait", "with", "nowait", "cancel_futures", "interrupt", "drop"])
    if how in ("cancel_futures", "interrupt"):
        # What is still pending (the shared pool's work nobody waited for)
        # may be cancelled or stopped now.
        for rec in rnd.tracked:
            if not rec.future.done():
                rec.allowed = rec.allowed | ANY_STOP
    if how in ("wait", "with"):
        shut(rnd, pool, wait=True)
    elif how == "nowait":
        shut(rnd, pool, wait=False)
    elif how == "cancel_futures":
        shut(rnd, pool, wait=True, cancel_futures=True)
    elif how == "interrupt":
        shut(rnd, pool, wait=rng.random() < 0.5, interrupt=True)
    for ref in rnd.private:
        p = ref()
        if p is not None:
            shut(rnd, p, wait=True)
    futures = [rec.future for rec in rnd.tracked if isinstance(rec.future, cf.Future)]
    rnd.wait_futures(futures, f"the round's futures (shared pool: {how})")
    end = time.monotonic() + rnd.hang
    for rec in rnd.tracked:
        if rec.calls != -1:
            while rec.calls == 0 and time.monotonic() < end:
                time.sleep(0.001)
            check(rec.calls == 1, "every future resolves exactly once",
                  f"{rec.label}: done-callback called {rec.calls} times (done: {rec.future.done()})")
        rnd.check_done(rec)
    for marks, n, label in rnd.marks:
        counts = bytes(memoryview(marks))[:n]
        twice = [i for i, c in enumerate(counts) if c > 1]
        check(not twice, "no task runs twice", f"{label}: tasks {twice[:10]} ran more than once")
    if how == "drop":
        rnd.pool = None
        del pool
        gc.collect()
    else:
        shut(rnd, pool, wait=True)
        for what, value in counters(pool):
            check(value == 0, "counts are 0 once a pool has shut down",
                  f"shared pool ({how}): {what} = {value}")


def settle_counts(run: Run) -> dict[str, int]:
    """live_counts() once every worker left and garbage went."""
    gc.collect()
    _core.join_all_workers(run.hang)
    end = time.monotonic() + run.hang
    while True:
        gc.collect()
        counts = _core.live_counts()
        if counts == run.baseline or time.monotonic() > end:
            return counts
        time.sleep(0.01)


def run_round(run: Run, index: int) -> None:
    started = time.monotonic()
    run.round_index = index
    run.watchdog.arm(run.hang * 8 + 60)
    picks = play_round(run, index)
    run.round = None
    if picks and not run.tainted:
        counts = settle_counts(run)
        if counts != run.baseline:
            diff = {k: (run.baseline.get(k), v) for k, v in counts.items()
                    if v != run.baseline.get(k)}
            run.record("live_counts() back to baseline",
                       f"after round {index} ({', '.join(picks)}): (baseline, now) {diff}")
    run.watchdog.disarm()
    if run.verbose:
        print(f"round {index}: {time.monotonic() - started:.1f}s", flush=True)


def play_round(run: Run, index: int) -> list[str]:
    """The scenarios of round `index`, then its end; the names played (none
    if a hang left threads behind)."""
    rnd = run.round = Round(run, index)
    picks = choose(run, rnd)
    rnd.pool, description = shared_pool(rnd)
    # A crash (an assertion of the debug build, ASan) ends the process with
    # no report: this line names the round to replay.
    print(f"round {index}: {', '.join(picks)}" + (f" ({description})" if run.verbose else ""),
          flush=True)
    threads = []
    for k, name in enumerate(picks):
        fn, _, is_async = SCENARIOS[name]
        threads.append((name, run_thread(rnd, name, fn, is_async,
                                         random.Random(f"{run.seed}/{index}/{k}"))))
    # A scenario's own waits give up after `hang` seconds (and say what
    # hung); these deadlines catch a wait that does not.
    if not join_or_record(rnd, threads, time.monotonic() + run.hang * 3):
        return []   # (with --keep-going) the hung threads are left behind
    finisher = run_thread(rnd, "finish_round", lambda r, _rng: finish_round(r), False, rnd.rng)
    if not join_or_record(rnd, [("finish_round", finisher)], time.monotonic() + run.hang * 3):
        return []
    return picks


def warm_up(run: Run) -> None:
    """What lives for the whole process (the output channel, imports) is
    made before the baseline, taken once the counts are steady."""
    def use_a_pool() -> None:
        with interpool.Pool(1) as pool:
            pool.submit(hs.compute, 1).result()
            async def main() -> None:
                await pool.run(hs.compute, 1)

            asyncio.run(main())

    use_a_pool()
    _core.join_all_workers(run.hang)
    last, steady = None, 0
    while steady < 5:
        gc.collect()
        counts = _core.live_counts()
        steady = steady + 1 if counts == last else 0
        last = counts
        time.sleep(0.01)
    run.baseline = last


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds: no round starts after this")
    parser.add_argument("--round", type=int, default=None, help="run this round alone")
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--hang", type=float, default=120.0,
                        help="seconds a scenario or a shutdown may take before it is a hang")
    parser.add_argument("--scenarios", default="", help="comma-separated names (default: all)")
    parser.add_argument("--keep-going", action="store_true",
                        help="record failures and go on (a survey of what fails)")
    parser.add_argument("--plant", choices=["lost", "wrong", "hang", "negative"],
                        help="plant a bug, to see the invariants catch it")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for name, (fn, weight, is_async) in SCENARIOS.items():
            if weight:
                print(f"{name:20} weight {weight:3}  {'async ' if is_async else ''}"
                      f"{(fn.__doc__ or '').split(chr(10))[0]}")
        return 0
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little") if not os.environ.get(
            "INTERPOOL_STRESS_SEED") else int(os.environ["INTERPOOL_STRESS_SEED"])
    run = Run(args)
    unknown = (run.only or set()) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 3
    print(f"stress: seed {run.seed}, duration {run.duration:g}s, build {run.build}, "
          f"hang {run.hang:g}s; replay: {run.replay()}\n(after a crash, replay the last "
          f"round printed: make stress SEED={run.seed} ROUND=<round> BUILD={run.build})",
          flush=True)
    faulthandler.enable(all_threads=True)   # a crash prints every thread's stack
    run.watchdog = Watchdog(run)
    install_hooks(run, Monitor(run))
    warm_up(run)
    rounds = itertools.count(run.first_round or 0)
    done = 0
    for index in rounds:
        if run.first_round is None and run.elapsed() > run.duration and done:
            break
        if run.rounds is not None and done >= run.rounds:
            break
        run_round(run, index)
        done += 1
    run.watchdog.disarm()
    counts = _core.live_counts()
    if run.failures:
        print(f"\nstress: {len(run.failures)} failure(s) in {done} rounds, "
              f"{run.elapsed():.0f}s; first of each kind:")
        firsts: dict[str, tuple] = {}
        for failure in run.failures:
            firsts.setdefault(failure[3], failure)
        for t, r, name, invariant, _ in firsts.values():
            print(f"  {t:7.1f}s  round {r:4}  {name:18} {invariant}")
        print(f"seed {run.seed}; replay: {run.replay()}", flush=True)
        sys.stdout.flush()
        os._exit(1)
    print(f"stress: {done} rounds in {run.elapsed():.0f}s, every invariant held "
          f"(seed {run.seed}; live counts {counts})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
