"""Task functions of a module that imports numpy at top level: it cannot be
imported in a worker interpreter (numpy refuses subinterpreters), so with
``Pool(fallback=...)`` they run in the pool's fallback processes or threads."""

import os
import time

import numpy as np


class Overdrawn(Exception):
    """An exception with attributes set in __init__ and after."""

    def __init__(self, account, amount):
        super().__init__(f"{account} is short of {amount}")
        self.account = account
        self.amount = amount


def total(n):
    return int(np.arange(n).sum())


def scaled(a, factor=2):
    return np.asarray(a) * factor


def overdraw(account):
    exc = Overdrawn(account, 5)
    exc.note = "set later"
    raise exc


def where():
    """(process id, interpreter id) of the caller."""
    import _interpreters

    return os.getpid(), _interpreters.get_current()[0]


def spin(seconds):
    """Pure Python until `seconds` passed (a stop lands at a bytecode)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "finished"


def spin_then_report(seconds, path):
    spin(seconds)
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return "finished"


def show(x):
    print(f"fallback says {x}")
    return x


def is_shared(value):
    return type(value).__name__


def where_after(seconds):
    time.sleep(seconds)
    return where()


def log(message):
    import logging

    logging.getLogger("helpers_numpy").warning("fallback logs %s", message)
    return message


def die(status):
    os._exit(status)


def where_thread():
    import threading

    return os.getpid(), threading.get_native_id()   # (an ident may be reused at once)
