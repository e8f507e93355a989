"""The "C core" of helpers_fake_numpy (see helpers_no_subinterp.py)."""

import _interpreters

if _interpreters.get_current()[0] != 0:
    raise ImportError(f"module {__name__} does not support loading in subinterpreters")

VALUE = 42
