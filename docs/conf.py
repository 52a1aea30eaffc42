"""Sphinx configuration of the animedex-store documentation (``docs/``).

Build it, warnings as errors, as ``.ci/run`` does::

    pip install -e '.[docs]'
    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

The pages are Markdown (MyST). What can be generated is generated during the build by
``docs/_ext/animedex_docs.py``: the API reference, the revisions table, the CLI reference and the
errors table. Nothing is fetched from the network: cross-references to the standard library and
the libraries we build on resolve through the small table in ``docs/_ext/external_links.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "animedex-store"
author = "animedex"
copyright = "animedex"  # noqa: A001 - Sphinx's name

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "animedex_docs",
    "external_links",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# Every cross-reference must resolve: a name that moved fails the build.
nitpicky = True

# Options and commands are written with "--": never turn them into dashes.
smartquotes = False

myst_enable_extensions = ["colon_fence", "deflist"]
# Anchors for headings down to ###, so a page can link to a section of another (page.md#section).
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}

html_theme = "furo"
html_title = "animedex-store"
html_static_path: list[str] = []
html_show_sourcelink = False
# No web fonts or other assets fetched by the pages: the site works offline.
html_theme_options = {"navigation_with_keys": True}
