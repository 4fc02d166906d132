"""User-facing text names methods by what they are, not by words only the project's history knows.

README, CHANGELOG, docs/*.md, examples/* and benchmarks/ (the scripts, the summaries in
benchmarks/results/*.json and that folder's notes) must not speak of "the seeds'" (the reports the
project grew from), "Task 1", "Part B", a bare report number such as "002", "issue 20", a
"sitting" or a "session" of work, or "helpers" who ran something. Each method or recipe is
named by what it is and cites its paper or source instead.

:func:`internal_words` is the check itself, so that other tests can apply it to any text:
``tests/cli/test_help.py`` applies it to every command's ``--help`` and to the config fields'
descriptions (docs/cli.md, generated from ``--help``, is checked here as well).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# (name, pattern); case-insensitive. Each is narrow enough that ordinary text passes: a random
# "seed", "--seed", "--net seeds" (a CLI value), "seeds 0, 1, 2", a "helper module", a file
# name such as 000.png or recipe-002-small-ldm.png, a decimal such as 0.002, 1,000 or 60 000.
PATTERNS: tuple[tuple[str, str], ...] = (
    ("issue number", r"\bissues? ?#?\d+"),
    ("the seeds", r"\bseeds'|\bthe seeds\b(?!\s*(?:\d|\())|\bseeds? 00[0-4]\b"),
    ("sitting", r"\bsittings?\b"),
    ("task number", r"\btasks? ?\d"),
    ("part A/B", r"\bpart [ab]\b"),
    ("session", r"(?<!training )(?<!last )(?<!onnx )(?<!http )\bsessions?\b"),
    (
        "helper (a person)",
        r"\bhelper (?:sessions?|agents?)\b"
        r"|\bhelpers? (?:ran|run|were|was|did|measured|worked|wrote)\b"
        r"|\b(?:two|three|several|other) helpers\b",
    ),
    ("report number", r"(?<![\w.,\-/])(?<!\d )00[0-4](?![\w\-/]|\.\w)"),
)
_COMPILED = tuple((name, re.compile(p, re.IGNORECASE)) for name, p in PATTERNS)


def internal_words(text: str) -> list[str]:
    """The internal words in ``text``, in order of appearance (empty when it speaks to users)."""
    hits: list[tuple[int, str]] = []
    for _, rx in _COMPILED:
        hits += [(m.start(), m.group(0)) for m in rx.finditer(text)]
    return [word for _, word in sorted(hits)]


def internal_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, word)`` for every internal word in ``text``, lines counted from 1."""
    return [(n, w) for n, line in enumerate(text.splitlines(), 1) for w in internal_words(line)]


def user_files() -> list[Path]:
    docs = sorted((REPO / "docs").glob("*.md"))  # cli.md too: every command's --help
    examples = sorted(p for p in (REPO / "examples").iterdir() if p.is_file())
    return [REPO / "README.md", REPO / "CHANGELOG.md", *docs, *examples, *benchmark_files()]


def benchmark_files() -> list[Path]:
    """The benchmark scripts, the summaries and notes of benchmarks/results (not raw/, which
    git ignores: the scripts' own outputs)."""
    bench = REPO / "benchmarks"
    scripts = [*bench.glob("*.sh"), *bench.glob("*.py"), *bench.glob("ttq_runs/*.sh")]
    results = [*(bench / "results").glob("*.json"), *(bench / "results").glob("*.md")]
    return sorted(scripts + results)


@pytest.mark.parametrize("path", user_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_user_text_has_no_internal_words(path: Path):
    hits = internal_lines(path.read_text(encoding="utf-8"))
    rel = path.relative_to(REPO)
    assert not hits, "internal words a user cannot know:\n" + "\n".join(
        f"{rel}:{n}: {word!r}" for n, word in hits
    )


@pytest.mark.parametrize(
    "text",
    [
        "the seeds' 002 recipe",
        "as in the seeds",
        "the flow-matching report (seeds 003/004)",
        "small before issue 20",
        "issue #19",
        "in two sittings",
        "The seeds' Task 3 network",
        "Tasks 2 and 3",
        "task1",
        "the seeds' Part B",
        "This session's numbers",
        "two helper sessions were open",
        "helpers ran the tests",
        "the 002 report",
        "(001)",
        "with 002's weights",
    ],
)
def test_internal_words_are_found(text: str):
    assert internal_words(text), text


def test_benchmarks_are_checked():
    names = {str(p.relative_to(REPO)) for p in user_files()}
    assert {
        "benchmarks/time_to_quality.sh",
        "benchmarks/make_shapes.py",
        "benchmarks/ttq_runs/epochs_3_vs_4.sh",
        "benchmarks/results/README.md",
        "benchmarks/results/16.6-ttq-width-epochs.json",
    } <= names


@pytest.mark.parametrize(
    "text",
    [
        "--seed 0",
        "the same seed gives the same noise",
        "DDPM-100 with seeds 0, 1, 2 gives",
        "across 16 seeds",
        "three seeds of the ControlNet",
        "`--net small|seeds`",
        "a second export's helper module",
        "helpers used by two commands live in cli/shared.py",
        "`000.png`, `001.png`, ...: one PNG per sample",
        "PATH/cat/more/002.jpg",
        "img/recipe-002-small-ldm.png",
        "KID runs from ~0.002 (1000 real images)",
        "| 0.000 | 1.000 |",
        "10,000 test digits and 60 000 training digits",
        "seed * 1_000_003 + step",
        "how the last session ended",
        "part of the task",
    ],
)
def test_ordinary_text_passes(text: str):
    assert internal_words(text) == [], text
