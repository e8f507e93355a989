"""Imports, but warns that it runs without its C speedups (as some packages
do in a subinterpreter)."""

import warnings

warnings.warn("running without the C speedups", RuntimeWarning)
