"""Every measured number that the user docs quote comes from a benchmark summary.

The user docs are README.md and every page of docs/ but docs/benchmarks.md (whose tables
``test_benchmark_tables.py`` checks against the summaries); docs/cli.md is ``--help``,
generated from the app. ``benchmarks/results/quoted.json`` lists each quote with the
summary table cell it was copied from. A quote whose cell says otherwise, a quote whose
text holds other numbers than its value, a quote the file no longer holds, and a measured
number the files hold but quoted.json neither lists as a quote nor as not measured (with
the reason) all fail; so does a not-measured entry the file no longer holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
QUOTED = json.loads((RESULTS / "quoted.json").read_text())
# Checked against its summaries, cell for cell, by test_benchmark_tables.py
BENCHMARKS = "docs/benchmarks.md"
DOCS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))
FILES = ("README.md", *(name for name in DOCS if name != BENCHMARKS))

# What reads as a measurement: a time, a speed, a share, an FID, a size
MEASURED = re.compile(
    r"(?<![\w.])(?:~|about )?\d+(?:\.\d+)?(?:[-–]\d+(?:\.\d+)?)?"
    r" ?(?:min\b|minutes\b|s\b|img/s|ms/image|hours\b|h\b|%|GB\b|MB\b)"
    r"|FID \d+(?:\.\d+)?"
)
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _clean(cell: str) -> str:
    return cell.replace("**", "").replace("\\|", "|").strip()


def _cell(quote: dict) -> str:
    summary = json.loads((RESULTS / quote["summary"]).read_text())
    table = summary["tables"][quote.get("table", 0)]
    column = table["columns"].index(quote["column"])
    lead = [_clean(c) for c in quote["row"]]
    rows = [r for r in table["rows"] if [_clean(c) for c in r[: len(lead)]] == lead]
    assert len(rows) == 1, f"{quote['summary']}: {len(rows)} rows named {quote['row']!r}"
    cell = _clean(rows[0][column])
    if quote.get("seconds_as") == "min":
        # A time the code prints in whole minutes from a cell in seconds (the estimate's note)
        (seconds,) = NUMBER.findall(cell)
        cell = f"{float(seconds) / 60:.0f}"
    return cell


def test_files_cover_the_docs():
    assert "docs/cli.md" in FILES and BENCHMARKS not in FILES
    assert set(QUOTED["not_measured"]) <= set(FILES), "not_measured names a file not checked"
    assert {name for q in QUOTED["quotes"] for name in q["in"]} <= set(FILES)


@pytest.mark.parametrize("quote", QUOTED["quotes"], ids=lambda q: q["text"])
def test_each_quote_is_its_summary_cell_and_is_quoted(quote: dict):
    numbers = NUMBER.findall(quote["value"])
    cell = _cell(quote)
    for number in numbers:
        assert number in NUMBER.findall(cell), (
            f"{quote['text']!r}: {quote['summary']} says {cell!r} in {quote['row']!r} / "
            f"{quote['column']!r}"
        )
    assert sorted(NUMBER.findall(quote["text"])) == sorted(numbers), (
        f"{quote['text']!r} holds other numbers than its value {quote['value']!r}"
    )
    for name in quote["in"]:
        assert quote["text"] in (REPO / name).read_text(), f"{name} no longer quotes it"


@pytest.mark.parametrize("name", FILES)
def test_every_measured_number_is_a_listed_quote(name: str):
    text = (REPO / name).read_text()
    not_measured = QUOTED["not_measured"].get(name, {})
    stale = [k for k in not_measured if k not in text]
    assert not stale, f"{name}: not_measured lists what the file no longer holds: {stale}"
    assert all(reason.strip() for reason in not_measured.values()), f"{name}: a reason is empty"
    known = [q["text"] for q in QUOTED["quotes"] if name in q["in"]] + list(not_measured)
    spans = [(m.start(), m.end()) for k in known for m in re.finditer(re.escape(k), text)]
    loose = [
        (text.count("\n", 0, m.start()) + 1, m.group())
        for m in MEASURED.finditer(text)
        if not any(a <= m.start() and m.end() <= b for a, b in spans)
    ]
    assert not loose, f"{name}: numbers without a summary (line, text): {loose}"
