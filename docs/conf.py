"""Sphinx configuration of the docs site: Markdown pages (MyST), built strictly by `make docs`.

`make docs` runs `sphinx-build -W --keep-going -n`: every warning fails the build, including a
broken cross-reference, a missing target and a page that is in no table of contents.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))  # the config reference directive (vfn_config.py)

from vfn import installed_version  # noqa: E402

project = "video-focalnets"
author = "the video-focalnets authors"
copyright = f"2026, {author}"
release = version = installed_version()  # pyproject.toml's

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "vfn_config"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # `page.md#a-section` links resolve (and are checked)

autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_mock_imports: list[str] = []

html_theme = "alabaster"
html_title = f"video-focalnets {release}"
html_theme_options = {"description": "Video-FocalNets on Ray: train, evaluate, sweep, compare", "fixed_sidebar": True,
                      "page_width": "1400px", "body_max_width": "none"}  # the reference tables are wide
html_static_path = ["_static"]
html_css_files = ["custom.css"]
# a block without a language is output (a run's lines, a table), not code to colour
highlight_language = "none"

# nitpicky (-n) for our own objects; torch and the standard library have no inventory here (no
# network at build time), so their types stay plain text
nitpick_ignore_regex = [("py:class", r"(torch|collections|os|typing|numpy)\..*"), ("py:class", r"(nn\.)?Module")]
