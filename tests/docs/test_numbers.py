"""Every measured number that README.md and ``--help`` (docs/cli.md, generated from it)
quote comes from a benchmark summary: ``benchmarks/results/quoted.json`` lists each quote
with the summary table cell it was copied from. A quote whose cell says otherwise, a quote
the file no longer holds, and a measured number the files hold but quoted.json does not
list all fail."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
QUOTED = json.loads((RESULTS / "quoted.json").read_text())
FILES = ("README.md", "docs/cli.md")

# What reads as a measurement: a time, a speed, a share, an FID, a size
MEASURED = re.compile(
    r"(?<![\w.])(?:~|about )?\d+(?:\.\d+)?(?:[-–]\d+(?:\.\d+)?)?"
    r" ?(?:min\b|minutes\b|s\b|img/s|ms/image|hours\b|h\b|%|GB\b|MB\b)"
    r"|FID \d+(?:\.\d+)?"
)


def _clean(cell: str) -> str:
    return cell.replace("**", "").replace("\\|", "|").strip()


def _cell(quote: dict) -> str:
    summary = json.loads((RESULTS / quote["summary"]).read_text())
    table = summary["tables"][quote.get("table", 0)]
    column = table["columns"].index(quote["column"])
    lead = [_clean(c) for c in quote["row"]]
    rows = [r for r in table["rows"] if [_clean(c) for c in r[: len(lead)]] == lead]
    assert len(rows) == 1, f"{quote['summary']}: {len(rows)} rows named {quote['row']!r}"
    return _clean(rows[0][column])


@pytest.mark.parametrize("quote", QUOTED["quotes"], ids=lambda q: q["text"])
def test_each_quote_is_its_summary_cell_and_is_quoted(quote: dict):
    numbers = re.findall(r"\d+(?:\.\d+)?", quote["value"])
    cell = _cell(quote)
    for number in numbers:
        assert number in re.findall(r"\d+(?:\.\d+)?", cell), (
            f"{quote['text']!r}: {quote['summary']} says {cell!r} in {quote['row']!r} / "
            f"{quote['column']!r}"
        )
    for name in quote["in"]:
        assert quote["text"] in (REPO / name).read_text(), f"{name} no longer quotes it"


@pytest.mark.parametrize("name", FILES)
def test_every_measured_number_is_a_listed_quote(name: str):
    text = (REPO / name).read_text()
    known = [q["text"] for q in QUOTED["quotes"] if name in q["in"]]
    known += QUOTED["not_measured"].get(name, [])
    spans = [(m.start(), m.end()) for k in known for m in re.finditer(re.escape(k), text)]
    loose = [
        (text.count("\n", 0, m.start()) + 1, m.group())
        for m in MEASURED.finditer(text)
        if not any(a <= m.start() and m.end() <= b for a, b in spans)
    ]
    assert not loose, f"{name}: numbers without a summary (line, text): {loose}"
