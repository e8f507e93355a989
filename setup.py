"""Build interpool's C extension: the one build definition.

`pip install .` runs this file through setuptools; tools/build.py (the
in-place build used by tools/python and the tests) imports `extension()`
from it, so both compile the same sources with the same flags.

INTERPOOL_DEBUG=1 makes a debug build: -O0 -g, and assert() checks the
core's invariants (refcounts, task states, locks).
"""

import os
from glob import glob

from setuptools import Extension, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CORE = "src/core"   # one folder per layer: base, mem, codec, runtime, data, module
WARNINGS = ["-Wall", "-Wextra"]
RELEASE = ["-O2", "-g", "-DNDEBUG"]
DEBUG = ["-O0", "-g", "-UNDEBUG"]


def debug_requested() -> bool:
    return os.environ.get("INTERPOOL_DEBUG", "") not in ("", "0")


def extension(debug: bool | None = None, extra_cflags: list[str] | None = None) -> Extension:
    """The interpool._core extension (paths relative to the repository)."""
    if debug is None:
        debug = debug_requested()
    sources = sorted(glob(f"{CORE}/*/*.c", root_dir=ROOT))
    headers = sorted(glob(f"{CORE}/*/*.h", root_dir=ROOT))
    return Extension(
        "interpool._core",
        sources=sources,
        depends=headers,
        include_dirs=[CORE],
        extra_compile_args=[
            "-std=c11",
            "-fvisibility=hidden",
            *WARNINGS,
            *(DEBUG if debug else RELEASE),
            *(extra_cflags or []),
        ],
    )


if __name__ == "__main__":
    setup(ext_modules=[extension()])
