"""Shared setup for interpool's tests.

Task functions live in helper modules of this directory (``helpers_*.py``)
and travel to workers by module name, so this directory must be on sys.path
before any Pool is created (a Pool hands its sys.path to its workers).
pytest's default "prepend" import mode already does that for test modules;
doing it here too keeps it true whatever the import mode.
"""

import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
