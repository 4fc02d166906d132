"""The API reference (docs/api, Sphinx autodoc + napoleon over the public modules' docstrings)
builds with no warning: a broken docstring markup, a module that no longer imports or a
page naming a module that is gone fails here, as in CI (the dev extra installs Sphinx)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "docs" / "api"
PAGES = ("diffkit", "app", "methods", "samplers", "schedules", "param", "models", "config",
         "training", "runs")  # fmt: skip


def test_api_reference_builds_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="the docs extra: pip install -e '.[docs]'")
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(SOURCE), str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for page in PAGES:
        assert (out / f"{page}.html").is_file(), page
    # autodoc imported the modules and found their members (a page of headings alone
    # would also build without a warning)
    app = (out / "app.html").read_text()
    for name in ("diffkit.app.train.generative", "diffkit.app.train.run",
                 "diffkit.app.sample.sample", "diffkit.app.evaluate.evaluate",
                 "diffkit.app.edit.compose.anagram", "diffkit.app.reflow.plan_pairs"):  # fmt: skip
        assert f'id="{name}"' in app, name
    assert 'id="diffkit.load"' in (out / "diffkit.html").read_text()
