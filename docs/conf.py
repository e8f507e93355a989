"""Sphinx configuration of interpool's documentation (``make docs``).

The pages are Markdown (MyST); README.md and ARCHITECTURE.md are included,
not copied, so they stay the single source.  The API reference comes from
the docstrings (autodoc).  Warnings are errors (``make docs`` passes -W).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))

project = "interpool"
author = "the interpool developers"
copyright = "2026, the interpool developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "benchchart",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
# intersphinx needs the network: the references stay plain text offline.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

html_theme = "furo"
html_title = "interpool"
html_static_path = ["_static"]


def _literal_calls(app, what, name, obj, options, lines):
    """Docstrings copied from the stdlib's (``submit.__doc__ =
    ThreadPoolExecutor.submit.__doc__``) write ``fn(*args, **kwargs)`` as
    plain text: make it a literal, not broken emphasis."""
    for i, line in enumerate(lines):
        if "fn(*args, **kwargs)" in line and "``fn(*args, **kwargs)``" not in line:
            lines[i] = line.replace("fn(*args, **kwargs)", "``fn(*args, **kwargs)``")


def setup(app):
    app.connect("autodoc-process-docstring", _literal_calls)
