"""Task functions for tests/test_progress.py (worker interpreters import them)."""

LIMIT = 120.0  # a gate not opened by then ends the task: no test outlives a failure


def wait_gate(i: int, gates) -> int:
    """Task i > 0 waits until the test opens gates[i] (an interpool.Queue)."""
    if i:
        gates[i].get(timeout=LIMIT)
    return i
