"""The Python functions interpool's C core calls: one table, read once per
interpreter when interpool._core is imported (module/hooks.c lists the same
names in the same order).

Imports nothing at top level: every worker interpreter imports this module
at start-up, so each hook imports what it needs when it is first called.
"""


# ------------------------------------------------------------------ worker side

def load_callable(ref):
    from ._loading import load_callable

    return load_callable(ref)


def worker_setup(config, index):
    from ._loading import worker_setup

    worker_setup(config, index)


def worker_exit():
    import sys

    loop = sys.modules.get("interpool._worker_loop")
    if loop is not None:
        loop.close_loop()
    output = sys.modules.get("interpool._worker_output")
    if output is not None:
        output.flush()


def flush_output():
    from ._worker_output import flush

    flush()


def run_coroutine(ctx, task, coro):
    from ._worker_loop import run_coroutine

    return run_coroutine(ctx, task, coro)


def serve(ctx):
    from ._worker_loop import serve

    serve(ctx)


def pack_exception(exc):
    from ._remote import pack_exception

    if isinstance(exc, ImportError):  # one that a subinterpreter refused says so
        from ._refusal import from_task

        exc = from_task(exc)
    return pack_exception(exc)


def format_exception(exc):
    from ._remote import format_exception

    return format_exception(exc)


# ------------------------------------------------------------------ caller side

def unpack_exception(packed):
    from ._remote import unpack_exception

    return unpack_exception(packed)


def drain_output():
    from ._forwarding import drain

    drain()


def broken_error(message):
    from ._errors import broken_error

    return broken_error(message)


def stop_error(why=None):
    from ._errors import stop_error

    return stop_error(why)


# ------------------------------------------------------------------ either side

def queue_error(name):
    import queue

    return getattr(queue, name)


def queue_type():
    from ._queue import Queue

    return Queue


def pickler():
    """The codec's (dumps, loads): what a worker cannot import by name
    (functions and classes of __main__, lambdas, local classes) travels by
    value."""
    import pickle

    from ._byvalue import dumps

    return dumps, pickle.loads
