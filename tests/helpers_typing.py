"""Task functions for test_typing.py: what a worker interpreter has imported.

Imports nothing itself, so the answer is what interpool made the worker load.
"""

import sys


def loaded(names):
    """The names among `names` that this interpreter has imported."""
    return sorted(name for name in names if name in sys.modules)


def loaded_with_queue(queue, names):
    """loaded(), after receiving an interpool.Queue and using it."""
    queue.put(1)
    return loaded(names)
