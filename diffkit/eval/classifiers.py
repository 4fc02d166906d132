"""Which feature classifier may score a dataset, and which one eval picks by itself.

A classifier's own run says what it is: ``classifier.safetensors`` carries its recipe and
test accuracy in the metadata, and ``summary.json`` beside it the test accuracy measured
when training ended. A classifier qualifies as the feature network of its dataset when that
accuracy reaches :func:`required_accuracy` and it was trained on the whole training split to
the end of its schedule. The automatic choice (no ``--classifier``) takes the most accurate
qualified classifier under ``RUNS_DIR/classifier`` and refuses when none qualifies: a
20-step smoke classifier scored pure noise at FID 12 against a floor of 0.36, numbers that
looked like a result.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffkit.errors import CheckpointError, ConfigError
from diffkit.runs.checkpoint import read_header

CLASSIFIER_FORMAT = "diffkit-classifier-1"
CLASSIFIER_FILE = "classifier.safetensors"

# The fixed recipe reaches >= 99.3 % on MNIST and ~92 % on Fashion-MNIST (benchmarks.md);
# these leave room for another seed, and none for a smoke run or a broken one.
MIN_TEST_ACCURACY: dict[str, float] = {"mnist": 0.98, "fashion-mnist": 0.90}


def required_accuracy(dataset: str, num_classes: int) -> float:
    """The test accuracy a feature classifier for ``dataset`` needs: the table's, else
    halfway from chance to perfect, (1 + 1/K) / 2 (55 % for CIFAR-10's 10 classes): no
    claim of quality, but a classifier below it has not learnt its classes."""
    if dataset in MIN_TEST_ACCURACY:
        return MIN_TEST_ACCURACY[dataset]
    return (1 + 1 / max(num_classes, 1)) / 2


def percent(value: float) -> str:
    """An accuracy as '16.90 %'."""
    return f"{100 * value:.2f} %"


def threshold_text(value: float) -> str:
    """A required accuracy as '98 %' or '55 %'."""
    return f"{100 * value:.4g} %"


@dataclass(frozen=True)
class ClassifierRecord:
    """What a classifier file and its run folder say about it, read without its weights."""

    path: Path  # the classifier.safetensors
    name: str  # its run folder (or the file, outside one), for messages and reports
    dataset: str
    num_classes: int
    sha256: str
    test_accuracy: float | None
    accuracy_from: str | None  # "summary.json", "classifier.safetensors", or how it was measured
    limited: tuple[str, ...]  # config entries that cut its training short, e.g. "data.limit=4000"

    @property
    def required(self) -> float:
        return required_accuracy(self.dataset, self.num_classes)

    def problems(self) -> tuple[str, ...]:
        """Why it does not qualify as the feature network of its dataset; () if it does."""
        out = []
        if self.test_accuracy is None:
            out.append("test accuracy unknown (its run records none)")
        elif self.test_accuracy < self.required:
            out.append(f"{percent(self.test_accuracy)} test accuracy, below the "
                       f"{threshold_text(self.required)} required for {self.dataset}")  # fmt: skip
        if self.limited:
            out.append(f"trained on a limited slice ({', '.join(self.limited)})")
        return tuple(out)

    def describe(self) -> str:
        acc = "accuracy unknown"
        if self.test_accuracy is not None:
            acc = f"test accuracy {percent(self.test_accuracy)}"
        return f"{self.name} (sha256 {self.sha256[:12]}, {acc})"


def read_record(path: Path) -> ClassifierRecord:
    """The record of a classifier run folder or file; CheckpointError if it is none."""
    path = Path(path)
    file = path / CLASSIFIER_FILE if path.is_dir() else path
    meta, _ = read_header(file)
    if meta.get("diffkit.format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{file} is not a diffkit classifier")
    config = _json(meta.get("diffkit.config")) or _json_file(file.parent / "config.json")
    try:
        dataset = config["data"]["dataset"]
        num_classes = int(config.get("model", {}).get("num_classes", 10))
        sha256 = meta["diffkit.sha256"]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError(f"cannot read classifier {file}: no recipe in its metadata") from None
    summary = _json_file(file.parent / "summary.json")
    if summary.get("sha256") != sha256:
        summary = {}  # another classifier's summary (a copied file): not evidence for this one
    accuracy, source = _accuracy(summary.get("test_accuracy"), "summary.json")
    if accuracy is None:
        accuracy, source = _accuracy(meta.get("diffkit.test_accuracy"), CLASSIFIER_FILE)
    name = str(file.parent if file.name == CLASSIFIER_FILE else file)
    return ClassifierRecord(file, name, str(dataset), num_classes, str(sha256), accuracy,
                            source, _limits(config, summary))  # fmt: skip


def _limits(config: dict[str, Any], summary: dict[str, Any]) -> tuple[str, ...]:
    """What in the recipe cut training short: a data limit, or a max_steps that ended the
    run before the recipe's epochs (``--max-steps`` is a run's length, so such a run still
    ends "finished"; its summary's fractional epochs tell). Without a summary that says
    otherwise, a set max_steps counts."""
    data, train = config.get("data") or {}, config.get("train") or {}
    out = []
    if isinstance(data, dict) and data.get("limit") is not None:
        out.append(f"data.limit={data['limit']}")
    steps = train.get("max_steps") if isinstance(train, dict) else None
    if steps is not None:
        ran, planned = summary.get("epochs"), train.get("epochs")
        numbers = all(isinstance(v, int | float) for v in (ran, planned))
        if not numbers or summary.get("reason") == "max_steps" or ran < planned - 1e-9:
            out.append(f"train.max_steps={steps}")
    return tuple(out)


def _accuracy(value: Any, source: str) -> tuple[float | None, str | None]:
    try:
        acc = float(value)
    except (TypeError, ValueError):
        return None, None
    return (acc, source) if math.isfinite(acc) and 0 <= acc <= 1 else (None, None)


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _json_file(path: Path) -> dict[str, Any]:
    try:
        return _json(path.read_text())
    except OSError:
        return {}


@dataclass(frozen=True)
class ClassifierChoice:
    """The classifier an evaluation uses and why (``how``: one sentence)."""

    record: ClassifierRecord
    how: str
    explicit: bool  # named by the caller (--classifier): used even if it does not qualify
    skipped: tuple[ClassifierRecord, ...] = ()  # unqualified ones the automatic choice passed

    def warnings(self) -> tuple[str, ...]:
        problems = self.record.problems()
        if not problems:
            return ()
        r = self.record
        return (
            f"feature classifier {r.name} does not qualify for {r.dataset} "
            f"({'; '.join(problems)}); used because --classifier names it, so its scores "
            "compare only with scores from the same classifier",
        )

    def as_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "kind": "classifier", "name": r.name, "path": str(r.path), "sha256": r.sha256,
            "test_accuracy": r.test_accuracy, "accuracy_from": r.accuracy_from,
            "required_accuracy": r.required, "qualified": not r.problems(),
            "problems": list(r.problems()), "warnings": list(self.warnings()),
            "chosen": self.how,
            "skipped": [{"name": s.name, "problems": list(s.problems())} for s in self.skipped],
        }  # fmt: skip


def classifier_records(runs_dir: Path, dataset: str) -> list[ClassifierRecord]:
    """Readable classifiers for ``dataset`` under ``runs_dir/classifier``, newest first (run
    folders are named by their start time); unreadable files are passed over."""
    out = []
    for path in sorted(Path(runs_dir).glob(f"classifier/*/{CLASSIFIER_FILE}"), reverse=True):
        try:
            record = read_record(path)
        except CheckpointError:
            continue
        if record.dataset == dataset:
            out.append(record)
    return out


def choose_classifier(
    runs_dir: Path, dataset: str, explicit: Path | None = None
) -> ClassifierChoice:
    """``explicit`` if given (it must be for ``dataset``), else the most accurate qualified
    classifier for ``dataset`` under ``runs_dir`` (the newest of equals). ConfigError, one
    line, when there is none or none qualifies."""
    if explicit is not None:
        record = read_record(explicit)
        if record.dataset != dataset:
            raise ConfigError(f"classifier {explicit} was trained on {record.dataset}, "
                              f"not {dataset}")  # fmt: skip
        return ClassifierChoice(record, "named with --classifier", explicit=True)
    records = classifier_records(runs_dir, dataset)
    if not records:
        raise ConfigError(
            f"no feature classifier for {dataset} under {runs_dir}/classifier; train one "
            f"with {_train(dataset)} or pass --classifier PATH"
        )
    qualified = [r for r in records if not r.problems()]
    skipped = tuple(r for r in records if r.problems())
    if not qualified:
        raise ConfigError(_refusal(records, runs_dir, dataset))
    best = max(qualified, key=lambda r: r.test_accuracy or 0.0)  # the first (newest) of equals
    how = (f"chosen automatically: the most accurate of {len(qualified)} qualified {dataset} "
           f"classifier(s) under {runs_dir}")  # fmt: skip
    if skipped:
        listed = "; ".join(f"{s.name}: {', '.join(s.problems())}" for s in skipped[:3])
        how += (
            f"; skipped {len(skipped)} unqualified ({listed}{'; ...' if len(skipped) > 3 else ''})"
        )
    return ClassifierChoice(best, how, explicit=False, skipped=skipped)


def _train(dataset: str) -> str:
    return f"`diffkit train classifier --dataset {dataset}`"


def _refusal(records: list[ClassifierRecord], runs_dir: Path, dataset: str) -> str:
    """One line naming the best unqualified classifier, what it lacks, and the ways on."""
    best = max(records, key=lambda r: -1.0 if r.test_accuracy is None else r.test_accuracy)
    which = "the only one" if len(records) == 1 else f"the best of {len(records)}"
    return (f"no qualified feature classifier for {dataset} under {runs_dir}/classifier: "
            f"{which}, {best.describe()}, is unqualified ({'; '.join(best.problems())}); "
            f"train one with the full recipe, {_train(dataset)}, or pass --classifier "
            f"{best.name} to use it anyway")  # fmt: skip
