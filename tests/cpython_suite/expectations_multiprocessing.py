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
}

SKIP = {
    POOL + "test_terminate":
        "runs time.sleep(support.LONG_TIMEOUT) (300 s) in every worker, then terminate() "
        "and join(): a worker thread blocked in a C call stops only when the call returns "
        "(a process can be killed), so join() waits 300 s.  terminate() stopping running "
        "Python code is tested in tests/test_multiprocessing.py",
}
