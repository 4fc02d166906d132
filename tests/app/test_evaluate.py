"""`diffkit.app.evaluate` called from Python: a tiny DDPM run scored once and over a
sweep, with a tiny classifier as the feature network; the reports it returns are those
it writes, and what it reports goes to the Reporter it is given (none by default)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from diffkit.app.evaluate import EvalRequest, EvalResult, SweepResult, evaluate
from diffkit.config.settings import Settings
from diffkit.errors import UsageError
from tests.cli.util import TINY, invoke, last_line
from tests.eval.util import classifier_run


class Notes:
    """A Reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.nets: list[dict] = []
        self.bars: list[tuple[str, int | None]] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    def features(self, about: dict) -> None:
        self.nets.append(about)

    @contextmanager
    def steps(self, label: str, total: int | None):
        self.bars.append((label, total))
        yield lambda n=1: None


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def run(runs: Path, data_dir: Path) -> Path:
    return last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir", runs))


@pytest.fixture(scope="module")
def classifier(runs: Path) -> Path:
    return classifier_run(runs, "20240101-000000", 0.99)


@pytest.fixture
def settings(runs: Path, data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, runs_dir=runs, device="cpu")


def test_one_evaluation_returns_the_report_it_writes(run, classifier, settings):
    notes = Notes()
    request = EvalRequest(run, n=12, steps=2, classifier=classifier)
    result = evaluate(request, settings, notes)
    assert isinstance(result, EvalResult) and not result.reconstructions
    assert result.path.parent == run / "eval" and result.path.suffix == ".json"
    written = json.loads(result.path.read_text())
    assert written == json.loads(json.dumps(result.report))
    assert written["n"] == 12 and written["sampler"] == "dpm++2m" and written["steps"] == 2
    assert written["source"] == str(run) and written["dataset"] == "mnist"
    for key in ("fid", "kid", "is", "precision", "recall"):
        assert key in written["metrics"] and key in written["floor"]
    assert written["feature_net"]["name"] == str(classifier)
    assert json.loads(json.dumps(notes.nets)) == [written["feature_net"]]
    assert any(line.startswith("reference: mnist test split") for line in notes.lines)
    assert ("dpm++2m-2, 12 images", 2) in notes.bars


def test_a_sweep_writes_its_folder(run, classifier, settings):
    request = EvalRequest(run, n=10, sweep="steps=1,2", samplers="ddim", classifier=classifier)
    result = evaluate(request, settings)  # QUIET: nothing is printed
    assert isinstance(result, SweepResult) and not result.edges
    assert result.folder.parent == run / "eval" and result.folder.name.endswith("-sweep")
    written = json.loads((result.folder / "sweep.json").read_text())
    assert written == json.loads(json.dumps(result.report)) and written["swept"] == "steps"
    assert [(p.sampler, p.steps) for p in result.points] == [("ddim", 1), ("ddim", 2)]
    assert (result.folder / "sweep.png").is_file()
    assert len(list(result.folder.glob("grid-*.png"))) == 2


def test_a_request_is_checked_when_built(run, tmp_path):
    with pytest.raises(UsageError, match="at least 10"):
        EvalRequest(run, n=3)
    with pytest.raises(UsageError, match="no run, checkpoint or samples"):
        EvalRequest(tmp_path / "nothing")
