"""Which feature classifier may score a dataset: thresholds, what a run records, and the
automatic choice (skip the unqualified, take the most accurate, refuse when none fits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffkit.errors import ConfigError
from diffkit.eval.classifiers import (
    choose_classifier,
    read_record,
    required_accuracy,
)
from diffkit.eval.features import load_extractor
from tests.eval.util import classifier_run


def test_required_accuracy_per_dataset():
    assert required_accuracy("mnist", 10) == 0.98
    assert required_accuracy("fashion-mnist", 10) == 0.90
    # no table entry: halfway from chance (1/K) to perfect
    assert required_accuracy("cifar10", 10) == pytest.approx(0.55)
    assert required_accuracy("folder:x", 2) == pytest.approx(0.75)


def test_a_record_reads_the_run_summary_first(tmp_path: Path):
    run = classifier_run(tmp_path, "20240101-000000", 0.993)
    r = read_record(run)
    assert (r.dataset, r.test_accuracy, r.accuracy_from) == ("mnist", 0.993, "summary.json")
    assert r.name == str(run) and r.path == run / "classifier.safetensors"
    assert r.problems() == () and r.limited == ()
    # a summary of other weights (a copied file) is no evidence: the file's own metadata is
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(
        json.dumps(summary | {"sha256": "0" * 64, "test_accuracy": 1})
    )
    r = read_record(run / "classifier.safetensors")
    assert (r.test_accuracy, r.accuracy_from) == (0.993, "classifier.safetensors")


@pytest.mark.parametrize(
    ("flags", "reason", "epochs", "limited"),
    [
        ({"data.limit": 4000}, "finished", 4.0, ("data.limit=4000",)),
        # --max-steps is the run's length: a 20-step smoke run ends "finished" after 0.04
        # of its recipe's 4 epochs (an older run said "max_steps")
        ({"train.max_steps": 20}, "finished", 0.0427, ("train.max_steps=20",)),
        ({"train.max_steps": 20}, "max_steps", None, ("train.max_steps=20",)),
        ({"train.max_steps": 20}, "finished", None, ("train.max_steps=20",)),  # nothing says
        ({"train.max_steps": 10**4}, "finished", 21.3, ()),  # longer than the recipe
    ],
)
def test_a_limited_slice_is_recorded(tmp_path: Path, flags, reason, epochs, limited):
    r = read_record(classifier_run(tmp_path, "20240101-000000", 0.995, flags=flags, reason=reason,
                                   epochs=epochs))  # fmt: skip
    assert r.limited == limited
    assert bool(r.problems()) == bool(limited)


def test_unknown_accuracy_does_not_qualify(tmp_path: Path):
    r = read_record(classifier_run(tmp_path, "20240101-000000", None))
    assert r.test_accuracy is None and r.describe().endswith("accuracy unknown)")
    assert "test accuracy unknown" in r.problems()[0]


def test_automatic_choice_skips_the_unqualified_and_takes_the_most_accurate(tmp_path: Path):
    good = classifier_run(tmp_path, "20240101-000000", 0.991)
    better = classifier_run(tmp_path, "20240102-000000", 0.994)
    classifier_run(tmp_path, "20240103-000000", 0.997, flags={"train.max_steps": 20},
                   reason="max_steps")  # fmt: skip
    classifier_run(tmp_path, "20240104-000000", 0.169)  # the newest: a smoke run
    classifier_run(tmp_path, "20240105-000000", 0.999, dataset="fashion-mnist")
    choice = choose_classifier(tmp_path, "mnist")
    assert choice.record.path.parent == better and not choice.explicit
    assert [s.name for s in choice.skipped] == [
        str(tmp_path / "classifier" / f"2024010{d}-000000-mnist") for d in (4, 3)
    ]
    assert "most accurate of 2 qualified" in choice.how and "skipped 2 unqualified" in choice.how
    assert choice.warnings() == ()
    assert choose_classifier(tmp_path, "fashion-mnist").record.dataset == "fashion-mnist"
    assert good.is_dir()


def test_the_newest_of_equally_accurate_ones(tmp_path: Path):
    classifier_run(tmp_path, "20240101-000000", 0.99)
    newer = classifier_run(tmp_path, "20240102-000000", 0.99)
    assert choose_classifier(tmp_path, "mnist").record.path.parent == newer


def test_only_unqualified_ones_are_refused_in_one_line(tmp_path: Path):
    weak = classifier_run(tmp_path, "20240101-000000", 0.169, flags={"train.max_steps": 20},
                          reason="max_steps")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        choose_classifier(tmp_path, "mnist")
    message = str(info.value)
    assert "\n" not in message
    for part in (str(weak), "16.90 %", "98 %", "train.max_steps=20",
                 f"--classifier {weak} to use it anyway", "diffkit train classifier"):  # fmt: skip
        assert part in message, message


def test_a_named_weak_classifier_is_used_with_a_warning(tmp_path: Path):
    weak = classifier_run(tmp_path, "20240101-000000", 0.5, flags={"data.limit": 256})
    choice = choose_classifier(tmp_path, "mnist", explicit=weak)
    assert choice.explicit and choice.record.path.parent == weak
    (warning,) = choice.warnings()
    assert "50.00 %" in warning and "98 %" in warning and "data.limit=256" in warning
    with pytest.raises(ConfigError, match="trained on mnist, not fashion-mnist"):
        choose_classifier(tmp_path, "fashion-mnist", explicit=weak)


def test_none_at_all_says_how_to_get_one(tmp_path: Path):
    (tmp_path / "classifier" / "junk").mkdir(parents=True)
    (tmp_path / "classifier" / "junk" / "classifier.safetensors").write_bytes(b"not a file")
    with pytest.raises(ConfigError, match="diffkit train classifier --dataset mnist"):
        choose_classifier(tmp_path, "mnist")


def test_the_extractor_reports_its_choice(tmp_path: Path):
    run = classifier_run(tmp_path, "20240101-000000", 0.992)
    ex = load_extractor("classifier", "mnist", tmp_path)
    about = ex.about()
    assert about["name"] == str(run) and about["sha256"] == ex.digest
    assert about["test_accuracy"] == 0.992 and about["qualified"] and about["warnings"] == []
    assert about["required_accuracy"] == 0.98 and about["fid_backend"] == "diffkit"
    assert about["summary"].startswith(f"classifier {run} (sha256 {ex.digest[:12]}, test accuracy "
                                       "99.20 %); chosen automatically")  # fmt: skip


def test_unknown_accuracy_is_measured_on_the_test_split(tmp_path: Path):
    import torch

    run = classifier_run(tmp_path, "20240101-000000", None)
    ex = load_extractor("classifier", "mnist", tmp_path, classifier=run)
    assert ex.about()["test_accuracy"] is None
    logits = torch.eye(10)[[0, 1, 2, 3]]  # predicts 0, 1, 2, 3
    assert ex.measure_accuracy(logits, torch.tensor([0, 1, 2, 9])) == 0.75
    about = ex.about()
    assert about["test_accuracy"] == 0.75 and ex.test_accuracy == 0.75
    assert about["accuracy_from"] == "measured on 4 mnist test images by this evaluation"
    assert "75.00 %" in about["warnings"][0] and "measured on 4" in about["summary"]
