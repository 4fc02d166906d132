"""Models diffkit did not train, as diffkit models (:mod:`diffkit.models.contract`).

:mod:`~diffkit.external.diffusers` needs the optional ``[diffusers]`` extra and is imported
only when such a model is loaded; this package itself imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

HF_PREFIX = "hf:"
MODEL_INDEX = "model_index.json"


def is_foreign(source: Path | str) -> bool:
    """``hf:ORG/NAME``, or a folder a diffusers pipeline was saved to (it holds
    ``model_index.json``)."""
    text = str(source)
    return text.startswith(HF_PREFIX) or (Path(text) / MODEL_INDEX).is_file()
