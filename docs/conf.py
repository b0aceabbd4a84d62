"""Sphinx configuration for async_stagger's documentation."""

import async_stagger

project = "async_stagger"
author = "async_stagger developers"
copyright = "2026, async_stagger developers"
release = async_stagger.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
]
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["narrow.css"]
