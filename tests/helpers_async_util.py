"""Test-side helpers for the asyncio tests (not task functions)."""

import asyncio
import os
import selectors
import sys

import pytest

TIMEOUT = 60.0  # generous upper bound for anything that must not hang


def _import_uvloop():
    try:
        import uvloop
    except ImportError as exc:
        # Keep only the text: on 3.15, formatting a traceback that chains
        # this ModuleNotFoundError re-imports the broken uvloop package and
        # fails inside the traceback module.
        return None, f"{type(exc).__name__}: {exc}"
    return uvloop, None


_UVLOOP, _UVLOOP_ERROR = _import_uvloop()


def uvloop_factory():
    """uvloop's loop factory, or skip the test with the reason."""
    if _UVLOOP is None:
        pytest.skip(
            f"uvloop does not import on Python {sys.version_info.major}."
            f"{sys.version_info.minor} ({_UVLOOP_ERROR})"
        )
    return _UVLOOP.new_event_loop


LOOP_KINDS = ["asyncio", "uvloop"]


def loop_factory(kind):
    """None (asyncio's default loop) or uvloop's factory."""
    if kind == "asyncio":
        return None
    if kind == "uvloop":
        return uvloop_factory()
    raise ValueError(kind)


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    """Each kind of event loop in turn (skipped where uvloop does not
    import); test modules import this fixture."""
    loop_factory(request.param)
    return request.param


def run_with(kind, coro_fn, *args):
    """asyncio.run(coro_fn(*args)) on the given kind of loop, bounded by TIMEOUT."""

    async def bounded():
        async with asyncio.timeout(TIMEOUT):
            return await coro_fn(*args)

    return asyncio.run(bounded(), loop_factory=loop_factory(kind))


async def await_path(path, timeout=30.0):
    """Poll (without blocking the loop) until `path` exists."""
    async with asyncio.timeout(timeout):
        while not os.path.exists(path):
            await asyncio.sleep(0.002)


async def settle(iterations=20):
    """Let the loop run callbacks scheduled from finalizers (e.g. the
    aclose() of an abandoned async generator)."""
    for _ in range(iterations):
        await asyncio.sleep(0.001)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


class CountingSelector(selectors.DefaultSelector):
    """The default selector, counting how often the loop polls it."""

    def __init__(self):
        super().__init__()
        self.selects = 0

    def select(self, timeout=None):
        self.selects += 1
        return super().select(timeout)


def counting_loop_factory(holder):
    """A loop factory for asyncio.run whose selector lands in holder[0]."""

    def factory():
        selector = CountingSelector()
        holder.append(selector)
        return asyncio.SelectorEventLoop(selector)

    return factory
