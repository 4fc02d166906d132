"""CHANGELOG.md and the version agree: ``diffkit --version`` is the newest released heading,
an ``[Unreleased]`` section heads the list, and no release repeats a ``###`` heading (each
release reads as one list of what was added, changed, removed and fixed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHANGELOG = REPO / "CHANGELOG.md"
RELEASE = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$")
KINDS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")  # Keep a Changelog


def releases() -> list[tuple[str, str | None, list[str]]]:
    """``(version, date, ### headings in order)`` for every ``## [...]`` section."""
    out: list[tuple[str, str | None, list[str]]] = []
    for line in CHANGELOG.read_text(encoding="utf-8").splitlines():
        if m := RELEASE.match(line):
            out.append((m["version"], m["date"], []))
        elif line.startswith("## "):
            raise AssertionError(f"not a release heading: {line!r}")
        elif line.startswith("### ") and out:
            out[-1][2].append(line[4:].strip())
    return out


def test_version_is_the_newest_release():
    found = releases()
    assert found[0][0] == "Unreleased" and found[0][1] is None
    version, date, _ = found[1]
    assert date is not None, f"release {version} has no date"
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)  # this checkout's diffkit, installed or not
    done = subprocess.run([sys.executable, "-m", "diffkit", "--version"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"diffkit {version}"


def test_releases_are_ordered_and_headed_once():
    found = releases()
    dated = [(v, d) for v, d, _ in found[1:]]
    assert all(d is not None for _, d in dated)
    assert [d for _, d in dated] == sorted((d for _, d in dated), reverse=True)
    numbers = [tuple(int(p) for p in v.split(".")) for v, _ in dated]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers)
    for version, _, headings in found:
        assert len(headings) == len(set(headings)), f"{version} repeats a heading: {headings}"
        assert set(headings) <= set(KINDS), f"{version}: {headings}"
        assert headings == sorted(headings, key=KINDS.index), f"{version}: {headings}"
