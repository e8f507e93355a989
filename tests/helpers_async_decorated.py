"""A module that uses interpool.interpreter as a decorator (imported by a
test, which expects importing it to work)."""

from interpool import interpreter


@interpreter
def decorated_cpu(x):
    from helpers_interp import current_interpreter_id

    return current_interpreter_id(), x * 2
