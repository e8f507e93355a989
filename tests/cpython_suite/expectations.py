"""What CPython's InterpreterPoolExecutor tests do with interpool's class.

Keys are unittest test ids.  ``tests/test_cpython_suite.py`` (and the
runner's own verdict) require every test listed in EXPECTED_FAILURES to fail
or error, and every other test that runs to pass (or be skipped by CPython's
own decorators), so this list cannot go stale in either direction.

Each reason starts with its class:

* "tests stdlib internals: ..." -- the test inspects attributes or
  implementation details of the stdlib class (``_threads``, the
  ``ExecutionFailed`` cause, thread-per-worker behaviour) that a drop-in need
  not reproduce.
* "documented deviation: ..." -- interpool behaves differently on purpose
  (functions travel by reference, arguments through interpool's codec) and
  documents it.
* "interpool bug: ..." -- should pass; see the report that came with this
  list for the fix.

SKIP lists tests the runner does not run at all (they hang or take too long
with interpool); each must come out "skipped".
"""

P = "test.test_concurrent_futures."
IPT = P + "test_interpreter_pool.InterpreterPoolExecutorTest."

EXPECTED_FAILURES = {
}

SKIP = {
}
