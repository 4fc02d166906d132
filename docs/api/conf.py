"""Sphinx configuration of diffkit's API reference: the public modules' docstrings.

Build it (tests/docs/test_api_reference.py does, with warnings as errors)::

    python -m sphinx -W --keep-going -b html docs/api OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the checkout's diffkit, installed or not

import diffkit  # noqa: E402

project = "diffkit"
author = "diffkit contributors"
release = version = diffkit.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
# Docstrings are Google-style where they have sections; most are prose with ``literals``.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_default_options = {"member-order": "bysource", "show-inheritance": False}
autodoc_typehints = "description"  # annotations read from the signatures, not evaluated text
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True  # show `default=DEFAULT_SETTINGS`, not its repr
# Optional extras, imported by a few functions only: never needed to read the docstrings.
autodoc_mock_imports = ["diffusers", "transformers", "huggingface_hub", "lpips", "torch_fidelity"]
# A name in an annotation that Sphinx cannot link (torch.Tensor, a pydantic type) is not an
# error; a broken reference in a docstring (:func:`...`) is.
nitpicky = False
suppress_warnings: list[str] = []

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"diffkit {release} API"
html_static_path: list[str] = []
