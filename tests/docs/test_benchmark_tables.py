"""The summaries in benchmarks/results/*.json print the same tables as docs/benchmarks.md.

Each summary with ``tables`` names its ``section``: the text of a ``##`` or ``###`` heading
of the doc (after the ``#`` marks). Its section of the doc runs from that heading to the next
heading of the same or a higher level, so a ``##`` section includes its ``###`` subsections.

The rules, checked both ways so that neither side can drift:

* Every row of every summary table (its ``columns`` and each of its ``rows``) is a row of a
  markdown table inside the summary's section.
* Every row of a markdown table in the doc belongs to the summary of the innermost heading
  above it that has one (a ``##`` section's own text before its first ``###`` goes to the
  ``##`` summary, a ``###`` subsection's to its own), and is a row of one of that summary's
  tables. A table under a heading that neither it nor any heading above it has a summary
  for is not checked: the summaries cover the doc's measurement sections, and a section
  that only sums up others (8.6 "What to use", say) has none.
* Every markdown table counts, whether it starts the line or is indented inside a list item
  (8.3 has one, and its summary carries it); a table inside a fenced code block is not a
  table. Separator rows (``|---|---|``) are not rows.
* A table whose body cells are all images (``![](img/...)``) lays out a figure, such as the
  preview grids of 16.3; it holds no numbers, so no summary carries it and it is not checked.

Cells are compared after dropping ``**`` bold markers, unescaping ``\\|`` and stripping
whitespace; a cell is split at each ``|`` not escaped by a backslash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "benchmarks.md"
RESULTS = REPO / "benchmarks" / "results"

HEADING = re.compile(r"^(#{2,3}) (.+)$")
SEPARATOR = re.compile(r"^\|[-| :]+\|$")
CELL_BAR = re.compile(r"(?<!\\)\|")
IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")

Row = tuple[str, ...]


def cell(text: object) -> str:
    return str(text).replace("**", "").replace("\\|", "|").strip()


def split_row(line: str) -> Row:
    """The cells of one markdown table line, ``| a | b \\| c |`` -> ``("a", "b | c")``."""
    inner = line.strip()
    inner = inner[1:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner[1:]
    return tuple(cell(c) for c in CELL_BAR.split(inner))


@dataclass
class Section:
    level: int
    title: str
    line: int
    rows: list[tuple[int, Row]] = field(default_factory=list)  # (line number, cells)


def is_figure(table: list[tuple[int, Row]]) -> bool:
    """A table whose body cells are all images lays out pictures; it holds no measurements."""
    body = [c for _, r in table[1:] for c in r]
    return bool(body) and all(IMAGE.fullmatch(c) for c in body)


def parse(text: str) -> list[Section]:
    """The doc's ``##``/``###`` sections in order, each with the table rows under it before
    the next heading of any level; a section's rows are its own, not its subsections'."""
    sections = [Section(1, "", 0)]  # the text before the first heading
    tables: list[tuple[Section, list[tuple[int, Row]]]] = []
    fenced = False
    previous_was_row = False
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        is_row = not fenced and stripped.startswith("|")
        if stripped.startswith("```"):
            fenced = not fenced
        elif fenced:
            pass
        elif m := HEADING.match(line):
            sections.append(Section(len(m.group(1)), m.group(2).strip(), n))
        elif is_row and not SEPARATOR.match(stripped):
            if not previous_was_row:
                tables.append((sections[-1], []))
            tables[-1][1].append((n, split_row(stripped)))
        previous_was_row = is_row
    for section, table in tables:
        if not is_figure(table):
            section.rows += table
    return sections


def within(sections: list[Section], i: int) -> list[Section]:
    """Section ``i`` with its subsections: up to the next heading of the same or higher level."""
    out = [sections[i]]
    for s in sections[i + 1 :]:
        if s.level <= sections[i].level:
            break
        out.append(s)
    return out


def summaries() -> list[Path]:
    return sorted(p for p in RESULTS.glob("*.json") if json.loads(p.read_text()).get("tables"))


def summary_rows(path: Path) -> list[Row]:
    out = []
    for table in json.loads(path.read_text(encoding="utf-8"))["tables"]:
        out += [tuple(cell(c) for c in r) for r in [table["columns"], *table["rows"]]]
    return out


SECTIONS = parse(DOC.read_text(encoding="utf-8"))
TITLES = [s.title for s in SECTIONS]


def test_parse_rules():
    text = (
        "## 1. A\n| a | b |\n|---|---|\n| **1** | x \\| y |\n"
        "```\n| not | a table |\n## not a heading\n```\n"
        "### 1.1 B\n* item\n\n    | c |\n    |---|\n    | 2 |\n## 2. C\n"
        "| a | b |\n|---|---|\n| ![](x.png) | ![](y.png) |\n"
    )
    got = [(s.level, s.title, [r for _, r in s.rows]) for s in parse(text)]
    assert got == [
        (1, "", []),
        (2, "1. A", [("a", "b"), ("1", "x | y")]),
        (3, "1.1 B", [("c",), ("2",)]),
        (2, "2. C", []),
    ]


def test_every_summary_section_is_a_heading():
    bad = []
    for path in summaries():
        title = json.loads(path.read_text(encoding="utf-8"))["section"]
        if title not in TITLES:
            bad.append(f"{path.name}: {title!r}")
    assert not bad, "summaries whose section is no heading of docs/benchmarks.md:\n" + "\n".join(
        bad
    )


@pytest.mark.parametrize("path", summaries(), ids=lambda p: p.name)
def test_summary_rows_are_in_its_section(path: Path):
    title = json.loads(path.read_text(encoding="utf-8"))["section"]
    if title not in TITLES:
        pytest.skip("no such heading: test_every_summary_section_is_a_heading fails")
    doc_rows = {r for s in within(SECTIONS, TITLES.index(title)) for _, r in s.rows}
    missing = [r for r in summary_rows(path) if r not in doc_rows]
    assert not missing, f"{path.name}: rows not in section {title!r} of the doc:\n" + "\n".join(
        map(repr, missing)
    )


def owners() -> dict[int, Path]:
    """Section index -> the summary whose rows its tables must be in (innermost with one)."""
    by_title: dict[str, Path] = {}
    for path in summaries():
        by_title.setdefault(json.loads(path.read_text(encoding="utf-8"))["section"], path)
    out: dict[int, Path] = {}
    stack: list[tuple[int, Path | None]] = []  # (level, summary) of the open headings
    for i, s in enumerate(SECTIONS):
        while stack and stack[-1][0] >= s.level:
            stack.pop()
        stack.append((s.level, by_title.get(s.title)))
        owner = next((p for _, p in reversed(stack) if p is not None), None)
        if owner is not None:
            out[i] = owner
    return out


def test_doc_rows_are_in_their_summary():
    rows_of: dict[Path, set[Row]] = {}
    bad = []
    for i, path in owners().items():
        have = rows_of.setdefault(path, set(summary_rows(path)))
        missing = [(n, r) for n, r in SECTIONS[i].rows if r not in have]
        bad += [f"{DOC.name}:{n} ({path.name}): {r!r}" for n, r in missing]
    assert not bad, "doc table rows no summary carries:\n" + "\n".join(bad)


def test_two_summaries_do_not_name_one_section():
    seen: dict[str, str] = {}
    bad = []
    for path in summaries():
        title = json.loads(path.read_text(encoding="utf-8"))["section"]
        if title in seen:
            bad.append(f"{seen[title]} and {path.name}: {title!r}")
        seen[title] = path.name
    assert not bad, "\n".join(bad)
