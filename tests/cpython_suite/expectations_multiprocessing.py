"""What CPython's multiprocessing.Pool tests do with interpool.multiprocessing.Pool.

As ``expectations.py`` (same rules, same groups): keys are unittest test
ids; every test listed in EXPECTED_FAILURES must fail or error, every other
test that runs must pass (or be skipped by CPython's own decorators), and
every listed test must exist.  SKIP lists tests the runner does not run.
"""

P = "test.test_multiprocessing_spawn.test_processes."
POOL = P + "WithProcessesTestPool."
LIFETIME = P + "WithProcessesTestPoolWorkerLifetime."

EXPECTED_FAILURES = {
    # ---- tests multiprocessing internals
    POOL + "test_make_pool":
        "tests stdlib internals: asserts len(p._pool) == 3, the list of worker "
        "processes (the ValueError for Pool(0) and Pool(-1) it checks first is raised, "
        "as tests/test_multiprocessing.py checks)",
    LIFETIME + "test_pool_worker_lifetime":
        "tests stdlib internals: compares the pids of p._pool's processes before and "
        "after maxtasksperchild=10 recycled them, through p._repopulate_pool(); interpool "
        "recycles the interpreter of a worker thread (tests/test_multiprocessing.py "
        "checks that maxtasksperchild gives fresh interpreters)",
    # ---- interpool sends more than pickle does (docs/migrating.md)
    P + "WithProcessesTestPoolWorkerErrors.test_unpickleable_result":
        "documented deviation: expects MaybeEncodingError for a task returning a lambda: "
        "interpool sends "
        "lambdas, closures and the script's functions by value (cloudpickle's rules), so "
        "the lambda comes back; a result that cannot travel at all (a lock, say) still "
        "raises MaybeEncodingError (tests/test_multiprocessing.py)",
}

SKIP = {
    POOL + "test_terminate":
        "runs time.sleep(support.LONG_TIMEOUT) (300 s) in every worker, then terminate() "
        "and join(): terminate() takes over calls stuck in C after the 100 ms grace and "
        "returns (it passes), but the worker threads it set aside sleep on for 300 s, past "
        "the end of the run and its check that every worker is gone.  terminate() "
        "stopping running Python code is tested in tests/test_multiprocessing.py",
}
