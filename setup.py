"""Build interpool's C extension (the rest is in pyproject.toml)."""

from glob import glob

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "interpool._core",
            sources=sorted(glob("src/interpool/*.c")),
            depends=glob("src/interpool/*.h"),
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"],
        )
    ]
)
