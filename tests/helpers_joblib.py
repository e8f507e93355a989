"""Task functions for tests/test_joblib.py (worker interpreters import them).

Tasks that must wait block on an interpool.Queue (a gate) the test opens;
they report that they started through another Queue.
"""

LIMIT = 120.0  # a gate not opened by then ends the task: no test outlives a failure

value = None  # set by the initializer of the pool's workers


class CustomError(Exception):
    pass


def square(x: int) -> int:
    return x * x


def scale(x: int, *, factor: int = 1) -> int:
    return x * factor


def interpreter_id(_: object = None) -> int:
    import _interpreters

    return _interpreters.get_current()[0]


def fail_at(i: int, bad: int, kind: str = "value") -> int:
    if i == bad:
        if kind == "custom":
            raise CustomError(f"task {i} failed")
        if kind == "zero":
            return 1 // 0
        raise ValueError(f"task {i} failed")
    return i


def set_value(v: int) -> None:
    global value
    value = v


def get_value(_: object = None) -> object:
    return value


def gated(i: int, gates, started) -> int:
    """Report the start, then wait for gate i (task 0 has no gate)."""
    started.put(i)
    if i:
        gates[i].get(timeout=LIMIT)
    return i


def fail_or_wait(i: int, gate, started) -> int:
    """Task 0 fails at once; the others report their start and wait for the gate."""
    started.put(i)
    if i == 0:
        raise ValueError("first task failed")
    gate.get(timeout=LIMIT)
    return i


def nested_parallel(i: int) -> list[int]:
    """A task that itself calls joblib.Parallel."""
    from joblib import Parallel, delayed

    return Parallel(n_jobs=2)(delayed(square)(j) for j in range(i, i + 3))
