"""Which interpreter runs the caller, on every CPython interpool supports.

Workers import this (through the other helpers), so it imports nothing at
module level.  ``concurrent.interpreters`` is 3.14+; the private
``_interpreters`` module is in 3.13 too, where ``get_current()`` returns
``(id, whence)`` as on 3.14 (some 3.13 pre-releases returned the id alone).
"""


def current_interpreter_id() -> int:
    import _interpreters

    current = _interpreters.get_current()
    return int(current[0] if isinstance(current, tuple) else current)
