"""A module that uses interpool.interpreter as a decorator (imported by a
test, which expects importing it to work)."""

from interpool import interpreter


@interpreter
def decorated_cpu(x):
    from concurrent import interpreters

    return interpreters.get_current().id, x * 2
