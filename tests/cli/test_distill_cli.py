"""``diffkit distill``: few-step students at the CLI boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffkit.runs.samples import read_samples
from tests.cli.util import TINY, invoke, last_line, refused

STUDENT = ("--max-steps", "3", "--batch-size", "16", "--sample-every-steps", "0")


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("distill")
    common = ("--data-dir", data_dir, "--runs-dir", root / "runs")
    ddpm = last_line(invoke("train", "ddpm", *TINY, *common, "--name", "t"))
    rf = last_line(invoke("train", "rf", *TINY, *common, "--name", "f"))
    cls = last_line(invoke("train", "ddpm", *TINY, *common, "--cond", "class", "--name", "c"))
    cd = last_line(invoke("distill", ddpm, *STUDENT, *common))
    return {"root": root, "runs": root / "runs", "data": data_dir, "ddpm": ddpm, "rf": rf,
            "cls": cls, "cd": cd, "common": common}  # fmt: skip


def test_a_student_records_its_teacher_and_samples_in_its_own_steps(world, tmp_path: Path):
    cd = world["cd"]
    assert cd.parent.name == "distill" and cd.name.endswith("-cd2")
    cfg = json.loads((cd / "config.json").read_text())
    teacher = json.loads((world["ddpm"] / "config.json").read_text())
    assert cfg["method"] == "ddpm" and cfg["model"] == teacher["model"]
    assert cfg["distill"]["method"] == "cd" and cfg["distill"]["teacher"] == str(world["ddpm"])
    assert cfg["init_from"]["sha256"] == cfg["distill"]["teacher_sha256"]
    out = last_line(invoke("sample", cd, "-n", "3", "--out", tmp_path / "s"))
    meta = json.loads((out / "sample.json").read_text())
    assert (meta["sampler"], meta["steps"], meta["nfe"]) == ("ddim", 2, 2)
    fresh = last_line(invoke("sample", cd, "-n", "3", "--sampler", "consistency", "--out",
                             tmp_path / "c"))  # fmt: skip
    assert json.loads((fresh / "sample.json").read_text())["steps"] == 2
    assert read_samples(out)["samples"].shape == (3, 1, 28, 28)
    one = last_line(invoke("sample", cd, "-n", "2", "--steps", "1", "--out", tmp_path / "one"))
    assert json.loads((one / "sample.json").read_text())["nfe"] == 1


def test_a_student_resumes_and_refuses_a_changed_teacher(world, tmp_path: Path, monkeypatch):
    student = last_line(invoke("distill", world["ddpm"], *STUDENT, *world["common"],
                               "--name", "again"))  # fmt: skip
    more = last_line(invoke("distill", "--resume", student, "--max-steps", "5",
                            *world["common"][:2]))  # fmt: skip
    assert more == student
    lines = (student / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if '"loss"' in line]
    assert steps[-1] == 5
    cfg = json.loads((student / "config.json").read_text())
    cfg["distill"]["teacher_sha256"] = "0" * 64
    (student / "config.json").write_text(json.dumps(cfg))
    world = world | {"student": student}
    line = refused("distill --resume {student} --max-steps 6", world, monkeypatch)
    assert "changed since" in line


@pytest.mark.parametrize(("method", "extra"), [("ect", ()), ("cd", ("--teacher-steps", "8"))])
def test_every_method_trains_a_flow_student(world, method: str, extra: tuple):
    out = last_line(invoke("distill", world["rf"], "--method", method, *extra, *STUDENT,
                           "--steps", "4", *world["common"]))  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "rf" and cfg["distill"]["steps"] == 4
    meta = json.loads((last_line(invoke("sample", out, "-n", "2")) / "sample.json").read_text())
    assert (meta["sampler"], meta["steps"]) == ("consistency", 4)


def test_a_class_conditional_student_bakes_in_guidance(world):
    out = last_line(invoke("distill", world["cls"], "--guidance", "2", *STUDENT,
                           *world["common"]))  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["distill"]["guidance"] == 2 and cfg["model"]["num_classes"] == 10
    labelled = last_line(invoke("sample", out, "-n", "2", "--class", "3"))
    assert read_samples(labelled)["labels"].tolist() == [3, 3]


def test_print_config_writes_nothing(world):
    r = invoke("distill", world["ddpm"], "--method", "ect", "--print-config", *world["common"])
    assert r.exit_code == 0 and 'method = "ect"' in r.stdout


@pytest.mark.parametrize(("line", "expected"), [
    ("distill {ddpm} --method reflow", "--pairs"),
    ("distill {ddpm} --guidance 2", "unconditional"),
    ("distill {ddpm} --method ect --teacher-steps 8", "--teacher-steps is for --method cd"),
    ("distill {cd}", "distilled student itself"),
    ("distill {ddpm} --steps 0", "--steps"),
    ("distill --resume {cd} --method ect", "drop --method"),
    ("distill {root}/nowhere", "nowhere"),
    ("distill", "give the teacher run"),
])  # fmt: skip
def test_bad_requests_exit_2_in_one_line_and_write_nothing(world, monkeypatch, line, expected):
    assert expected in refused(line, world, monkeypatch, folders=True)


def test_the_reflow_method_is_reflow_train_distill(world, tmp_path: Path):
    pairs = last_line(invoke("reflow", "make-pairs", world["rf"], "-n", "32", "--steps", "2",
                             "--shard-size", "16", *world["common"][2:]))  # fmt: skip
    new = last_line(invoke("distill", world["rf"], "--method", "reflow", "--pairs", pairs,
                           "--max-steps", "2", *world["common"]))  # fmt: skip
    old = last_line(invoke("reflow", "train", pairs, "--distill", "1", "--max-steps", "2",
                           "--straightness-n", "0", *world["common"]))  # fmt: skip
    a, b = (json.loads((p / "config.json").read_text()) for p in (new, old))
    assert a == b and a["reflow"]["distill_steps"] == 1


def test_a_student_exports_and_evaluates_like_any_run(world, tmp_path: Path):
    pytest.importorskip("diffusers")
    out = last_line(invoke("export", world["cd"], "--format", "diffusers", tmp_path / "x"))
    assert (out / "model_index.json").is_file()
    clf = last_line(invoke("train", "classifier", "--dataset", "mnist", "--limit-data", "512",
                           "--epochs", "1", *world["common"]))  # fmt: skip
    report = last_line(invoke("eval", world["cd"], "-n", "10", "--classifier", clf,
                              "--data-dir", world["data"]))  # fmt: skip
    meta = json.loads(report.read_text())
    assert meta["sampler"] == "ddim" and meta["steps"] == 2


@pytest.mark.parametrize("method", ["cd", "ect"])
def test_a_latent_teacher_gives_a_latent_student(data_dir: Path, tmp_path: Path, method: str):
    common = ("--data-dir", data_dir, "--runs-dir", tmp_path)
    vae = last_line(invoke("train", "vae", "--latent-dim", "8", "--limit-data", "64",
                           "--batch-size", "16", "--max-steps", "2", "--sample-every", "0",
                           *common))  # fmt: skip
    ldm = last_line(invoke("train", "ldm", "--vae", vae, "--limit-data", "64", "--batch-size",
                           "16", "--max-steps", "2", "--sample-every", "0", *common))  # fmt: skip
    student = last_line(invoke("distill", ldm, "--method", method, *STUDENT, *common))
    cfg = json.loads((student / "config.json").read_text())
    teacher = json.loads((ldm / "config.json").read_text())
    assert cfg["method"] == "ldm" and cfg["latent"] == teacher["latent"]
    out = last_line(invoke("sample", student, "-n", "3", "--out", tmp_path / "s"))
    assert read_samples(out)["samples"].shape == (3, 1, 28, 28)  # decoded to pixels
