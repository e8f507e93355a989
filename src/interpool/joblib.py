"""A joblib parallel backend that runs tasks in interpool's interpreters.

Importing this module registers the backend ``"interpool"``::

    import joblib
    import interpool.joblib  # noqa: F401  (registers the backend)

    with joblib.parallel_config(backend="interpool", n_jobs=2):
        results = joblib.Parallel()(joblib.delayed(score)(x) for x in items)

Each ``Parallel`` call gets a :class:`interpool.Pool` of ``n_jobs`` workers
(``n_jobs=-1``: one per CPU; ``n_jobs=1`` or unset runs sequentially, as
with joblib's own backends); ``with Parallel(...) as parallel:`` keeps one
pool for all the calls made in the block.  Batching is joblib's automatic
batching, and ``return_as="generator"`` / ``"generator_unordered"`` work.
A task's exception is re-raised by joblib with its own type; the rest of
the work is then cancelled (queued batches are dropped; running ones are
interrupted where interpool supports that).

Task functions run in subinterpreters.  Those of the script (and lambdas)
travel by value, so what the script imports (joblib, numpy) does not
matter, only what a task itself uses: pure Python and the stdlib load in a
worker, numpy does not.  joblib itself cannot be imported in a
subinterpreter today (loky imports ``faulthandler``), so a task cannot call
``Parallel`` itself.  Keyword arguments of the backend
(``parallel_config(backend="interpool", initializer=...)``) are passed to
``interpool.Pool``.
"""

from __future__ import annotations

import threading

from ._integrations import cancel_interrupting as _cancel
from ._integrations import in_subinterpreter

# Not `from typing import ...` at run time: worker interpreters import this
# module too, and typing costs each of them milliseconds (see __init__.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

__all__ = ["InterpoolBackend"]


# --------------------------------------------------- worker-interpreter side


def _run_batch(calls: Iterable[Call]) -> list[Any]:
    """Run one joblib batch in a worker interpreter: what joblib's
    ``BatchedCalls.__call__`` does, without joblib (which cannot load there)."""
    return [fn(*args, **kwargs) for fn, args, kwargs in calls]


# Worker interpreters import this module only to find _run_batch, and joblib
# does not load there (loky imports faulthandler, a single-phase-init
# module): the caller-side part is defined in the main interpreter only.
if TYPE_CHECKING or not in_subinterpreter():
    import inspect
    import queue
    from concurrent.futures import Future

    from joblib import cpu_count, register_parallel_backend
    from joblib._parallel_backends import (
        AutoBatchingMixin,
        FallbackToBackend,
        ParallelBackendBase,
        SequentialBackend,
    )

    import interpool

    _CALLER_SIDE = True
else:
    # Stand-ins so the class statement runs.
    AutoBatchingMixin = type("AutoBatchingMixin", (), {})
    ParallelBackendBase = type("ParallelBackendBase", (), {})
    _CALLER_SIDE = False


def _route(calls: list[Call]) -> tuple[Any, ...] | None:
    """The batch's distinct functions (what the pool's fallback decision is
    kept under), or None if one cannot be a key."""
    try:
        return tuple(dict.fromkeys(fn for fn, _, _ in calls))
    except TypeError:
        return None


class InterpoolBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib backend ``"interpool"``: batches run in interpool worker interpreters.

    ``InterpoolBackend(nesting_level=None, inner_max_num_threads=None,
    **pool_options)``: joblib creates it from the name, passing the keyword
    arguments of ``parallel_config(backend="interpool", ...)``;
    ``pool_options`` go to :class:`interpool.Pool` (``initializer``,
    ``initargs``, ...).
    """

    # Results reach joblib through future callbacks (on the pool's callback
    # thread): that is what generators, unordered results and timeouts need.
    supports_retrieve_callback = True
    # Tasks run in other interpreters: no shared memory with the caller, so
    # require="sharedmem" falls back to joblib's threads.
    uses_threads = False
    supports_sharedmem = False
    default_n_jobs = 1

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        **pool_options: Any,
    ) -> None:
        if "workers" in pool_options or "name" in pool_options:
            raise TypeError("the pool size is n_jobs; workers and name are not backend options")
        try:  # unknown options fail here, at the call
            inspect.signature(interpool.Pool).bind(1, **pool_options)
        except TypeError as exc:
            raise TypeError(f"InterpoolBackend: {exc} (not an interpool.Pool option)") from None
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        self.pool_options = pool_options
        self._pool: interpool.Pool | None = None
        self._n_jobs = 1
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """How many batches run at once: ``n_jobs``, all CPUs for -1 (and
        ``cpu_count() + 1 + n_jobs`` below that), 1 for None."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max(cpu_count() + 1 + n_jobs, 1)
        return n_jobs

    def configure(
        self,
        n_jobs: int | None = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        **backend_kwargs: Any,
    ) -> int:
        """Size the pool for this Parallel call (it starts at the first batch)."""
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            # joblib's rule: one job runs in the caller, with no pool at all.
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        if self._pool is not None and self._n_jobs != n_jobs:
            self._close_pool(wait=True)
        self._n_jobs = n_jobs
        return n_jobs

    def start_call(self) -> None:
        """A Parallel call starts: drop batches a previous call of the same
        ``Parallel`` object left queued when it aborted.  joblib 1.5 keeps
        them (for every backend: with "threading" too) and a managed
        ``with Parallel(...)`` would otherwise return them as the next
        call's first results."""
        ready = getattr(getattr(self, "parallel", None), "_ready_batches", None)
        if ready is not None:
            while True:
                try:
                    ready.get_nowait()
                except queue.Empty:
                    break

    def _get_pool(self) -> interpool.Pool:
        with self._lock:
            if self._pool is None:
                self._pool = interpool.Pool(self._n_jobs, name="joblib-interpool", **self.pool_options)
            return self._pool

    def submit(self, func: Any, callback: Callable[[Any], None] | None = None) -> Future[Any]:
        """Run one joblib batch (a ``BatchedCalls``) in the pool."""
        calls = getattr(func, "items", None)
        pool = self._get_pool()
        if calls is None:  # not a joblib batch: a plain callable
            future = pool.submit(func)
        else:
            # Functions of the script, lambdas and closures in the batch
            # travel by value.  With Pool(fallback=...), the functions of the
            # batch decide where it runs.
            calls = list(calls)
            future = pool._submit(_run_batch, (calls,), {}, None, _route(calls))
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def retrieve_result_callback(self, future: Future[Any]) -> Any:
        """The batch's list of results (or its exception, raised)."""
        return future.result()

    def get_nested_backend(self) -> tuple[Any, int | None]:
        """Backend for Parallel calls made inside tasks: sequential (joblib
        cannot run inside a worker interpreter yet, and a nested pool per task
        would oversubscribe the CPUs)."""
        return SequentialBackend(nesting_level=(self.nesting_level or 0) + 1), None

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A task failed: drop the queued batches and interrupt the running
        ones (where interpool supports that).  With ``ensure_ready`` the pool
        stays usable for the next call; otherwise it is shut down."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            _cancel(future)
        if not ensure_ready:
            self._close_pool(wait=False)

    def terminate(self) -> None:
        """The Parallel call is over: stop the pool, without waiting for
        batches still running after an abort."""
        self._close_pool(wait=True)
        self.reset_batch_stats()

    def _close_pool(self, wait: bool) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            busy = bool(self._pending)
        if pool is not None:
            pool.shutdown(wait=wait and not busy, cancel_futures=True)


if _CALLER_SIDE:
    register_parallel_backend("interpool", InterpoolBackend)
