"""`diffkit train controlnet`, hinted sampling and evaluation, end to end on tiny bases:
checkpoint round trip and exact resume, the base's sha256 checked on load, --embed-base,
pixel / latent / flow bases, the recon baseline, and bad hints exiting 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diffkit.methods.controlnet import Control, is_controlled, with_control
from diffkit.methods.load import load_pipeline
from diffkit.runs.checkpoint import load_checkpoint
from tests.cli.util import TINY, invoke, last_line

CTRL = ("--limit-data", "64", "--batch-size", "16", "--max-steps", "3", "--sample-every", "0")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def base(runs: Path, data_dir: Path) -> Path:
    """A tiny class-conditional DDPM."""
    return last_line(invoke("train", "ddpm", *TINY, "--cond", "class", "--data-dir", data_dir,
                            "--runs-dir", runs))  # fmt: skip


@pytest.fixture(scope="module")
def ctrl(base: Path, runs: Path, data_dir: Path) -> Path:
    return last_line(invoke("train", "controlnet", "--base", base, *CTRL, "--data-dir", data_dir,
                            "--runs-dir", runs))  # fmt: skip


def sample(source: Path, out: Path, *args, data_dir: Path):
    return invoke("sample", source, "--out", out, "--data-dir", data_dir, "--steps", "4", *args)


def test_the_run_records_its_base_and_trains_only_the_controlnet(ctrl: Path, base: Path):
    cfg = json.loads((ctrl / "config.json").read_text())
    assert cfg["method"] == "controlnet" and cfg["base"]["embedded"] is False
    assert cfg["base"]["source"] == str((base / "checkpoints" / "last.safetensors").resolve())
    assert len(cfg["base"]["sha256"]) == 64 and cfg["train"]["cond_drop"] == 0.5
    names = load_checkpoint(ctrl / "checkpoints" / "last.safetensors").tensors
    assert names and all(k.split(".")[0] in ("model", "ema", "optim") for k in names)
    assert all(k.split(".")[1] == "control" for k in names if k.startswith("model."))


def test_hinted_samples_round_trip_through_the_checkpoint(ctrl: Path, tmp_path: Path, data_dir):
    out = last_line(sample(ctrl, tmp_path / "a", "--hint", "mnist:test:0..5", data_dir=data_dir))
    meta = json.loads((out / "sample.json").read_text())
    assert (
        meta["n"] == 6 and meta["hint"] == "mnist:test:0..5" and meta["classes"] == [0, 1, 2, 4, 7]
    )
    pipe = load_pipeline(ctrl)
    assert is_controlled(pipe.model) and pipe.num_classes == 10
    again = last_line(sample(ctrl, tmp_path / "b", "--hint", "mnist:test:0..5", data_dir=data_dir))
    a = load_file(next(out.glob("samples-*.safetensors")))
    b = load_file(next(again.glob("samples-*.safetensors")))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_scale_zero_is_the_base_and_a_trained_controlnet_is_not(ctrl: Path, base: Path):
    from diffkit.methods.controlnet import hint_condition
    from diffkit.models.conditioning import Cond

    pipe, plain = load_pipeline(ctrl), load_pipeline(base)
    # a ControlNet three steps in moves its zero convs off zero: scale 1 differs from the base
    labels, hints = torch.tensor([1, 2]), torch.rand(2, 1, 28, 28).round()
    kw = {"sampler": "ddim", "steps": 3, "labels": labels}
    hinted = pipe.sample(2, cond=hint_condition(hints), **kw).images
    off = with_control(pipe, Control(scale=0.0)).sample(2, cond=Cond(hint=hints), **kw).images
    ref = plain.sample(2, **kw).images
    assert torch.equal(off, ref) and not torch.equal(hinted, ref)
    late = with_control(pipe, Control(start=0.9)).sample(2, cond=Cond(hint=hints), **kw).images
    assert not torch.equal(late, hinted)  # control only near the data end


def test_guidance_guess_mode_and_every_sampler_take_hints(ctrl: Path, tmp_path: Path, data_dir):
    for args in (["--guidance", "3"], ["--guidance", "3", "--guess-mode"],
                 ["--sampler", "dpm++2m"], ["--sampler", "heun", "--control-scale", "0.5"],
                 ["--sampler", "ddpm", "--control-end", "0.5"]):  # fmt: skip
        result = sample(ctrl, tmp_path / "-".join(args), "--hint", "mnist:test:0..1", *args,
                        data_dir=data_dir)  # fmt: skip
        assert result.exit_code == 0, (args, result.output)


def test_a_changed_base_is_refused_and_an_embedded_one_travels(
    base: Path, runs: Path, data_dir: Path, tmp_path: Path
):
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    ctrl = last_line(invoke("train", "controlnet", "--base", copy, *CTRL, "--data-dir", data_dir,
                            "--runs-dir", runs))  # fmt: skip
    embedded = last_line(invoke("train", "controlnet", "--base", copy, *CTRL, "--embed-base",
                                "--data-dir", data_dir, "--runs-dir", runs))  # fmt: skip
    other = last_line(invoke("train", "ddpm", *TINY, "--cond", "class", "--seed", "1",
                             "--data-dir", data_dir, "--runs-dir", runs))  # fmt: skip
    shutil.copy(other / "checkpoints" / "last.safetensors", copy / "checkpoints")
    result = sample(ctrl, tmp_path / "s", "--hint", "mnist:test:0", data_dir=data_dir)
    assert result.exit_code == 2 and "changed since the ControlNet was trained" in result.output
    shutil.rmtree(copy)
    result = sample(ctrl, tmp_path / "s", "--hint", "mnist:test:0", data_dir=data_dir)
    assert result.exit_code == 2 and "is gone" in result.output and "Traceback" not in result.output
    assert (
        sample(embedded, tmp_path / "e", "--hint", "mnist:test:0", data_dir=data_dir).exit_code == 0
    )


def test_resume_continues_exactly(base: Path, runs: Path, data_dir: Path):
    two = ("--epochs", "2", "--data-dir", data_dir, "--runs-dir", runs)
    whole = last_line(invoke("train", "controlnet", "--base", base, *CTRL[:-4], "--max-steps", "6",
                             "--sample-every", "0", *two))  # fmt: skip
    part = last_line(invoke("train", "controlnet", "--base", base, *CTRL, *two))
    last_line(invoke("train", "controlnet", "--resume", part, "--max-steps", "6",
                     "--data-dir", data_dir))  # fmt: skip
    a = load_checkpoint(whole / "checkpoints" / "last.safetensors")
    b = load_checkpoint(part / "checkpoints" / "last.safetensors")
    assert a.train_state["position"]["step"] == b.train_state["position"]["step"] == 6
    ema_a, ema_b = a.section("ema"), b.section("ema")
    assert ema_a.keys() == ema_b.keys() and all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_flow_and_recon_and_unlocked_decoder(runs: Path, data_dir: Path, tmp_path: Path):
    flow = last_line(invoke("train", "rf", *TINY, "--data-dir", data_dir, "--runs-dir", runs))
    ctrl = last_line(
        invoke(
            "train",
            "controlnet",
            "--base",
            flow,
            *CTRL,
            "--unlock-decoder",
            "--hint",
            "sobel",
            "--data-dir",
            data_dir,
            "--runs-dir",
            runs,
        )
    )
    names = load_checkpoint(ctrl / "checkpoints" / "last.safetensors").section("model")
    assert any(k.startswith("decoder.up.") for k in names)
    assert last_line(sample(ctrl, tmp_path / "f", "--hint", "mnist:test:0..1", "--sampler",
                            "euler", data_dir=data_dir))  # fmt: skip
    recon = last_line(invoke("train", "controlnet", "--base", flow, *CTRL, "--objective", "recon",
                             "--data-dir", data_dir, "--runs-dir", runs))  # fmt: skip
    pipe = load_pipeline(recon)
    from diffkit.methods.controlnet import hint_condition

    cond = hint_condition(torch.rand(2, 1, 28, 28).round())
    one, two = (pipe.sample(2, cond=cond, seed=s).images for s in (0, 1))
    assert torch.equal(one, two)  # a deterministic map from edges: no diversity
    result = sample(recon, tmp_path / "r", "--hint", "mnist:test:0", data_dir=data_dir)
    assert result.exit_code == 2 and "steps must be between 1 and 1" in result.output


def test_latent_base(runs: Path, data_dir: Path, tmp_path: Path):
    vae = last_line(invoke("train", "vae", "--latent", "spatial", "--limit-data", "64",
                           "--batch-size", "16", "--max-steps", "2", "--sample-every", "0",
                           "--data-dir", data_dir, "--runs-dir", runs))  # fmt: skip
    ldm = last_line(invoke("train", "ldm", "--vae", vae, "--limit-data", "64", "--batch-size",
                           "16", "--max-steps", "2", "--sample-every", "0",
                           "--data-dir", data_dir, "--runs-dir", runs))  # fmt: skip
    ctrl = last_line(
        invoke(
            "train",
            "controlnet",
            "--base",
            ldm,
            "--limit-data",
            "64",
            "--batch-size",
            "16",
            "--data-dir",
            data_dir,
            "--runs-dir",
            runs,
        )
    )
    with Image.open(ctrl / "samples" / "epoch-0001.png") as grid:  # 16 hint | sample pairs
        assert grid.size[0] > 8 * 28 and grid.size[1] > 4 * 28
    out = last_line(sample(ctrl, tmp_path / "l", "--hint", "mnist:test:0..2", data_dir=data_dir))
    assert json.loads((out / "sample.json").read_text())["n"] == 3


def test_eval_scores_edges_and_sweeps_the_control_scale(ctrl: Path, runs: Path, data_dir: Path):
    clf = last_line(invoke("train", "classifier", "--limit-data", "256", "--max-steps", "4",
                           "--data-dir", data_dir, "--runs-dir", runs))  # fmt: skip
    common = ("--hint", "mnist:test", "-n", "12", "--steps", "3", "--classifier", clf,
              "--data-dir", data_dir)  # fmt: skip
    path = last_line(invoke("eval", ctrl, *common))
    edges = json.loads(path.read_text())["metrics"]["edges"]
    assert 0 <= edges["f1_exact"] <= edges["f1"] <= 1 and edges["sobel_l1"] >= 0
    folder = last_line(invoke("eval", ctrl, *common, "--sweep", "control_scale=0,1", "--samplers",
                              "ddim"))  # fmt: skip
    points = json.loads((folder / "sweep.json").read_text())["points"]
    assert [p["control_scale"] for p in points] == [0.0, 1.0] and (folder / "sweep.png").is_file()


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_bad_hints_exit_2(ctrl: Path, base: Path, tmp_path: Path, data_dir: Path):
    small = _png(tmp_path / "small.png", np.zeros((20, 20), np.uint8))
    color = np.zeros((28, 28, 3), np.uint8)
    color[..., 0] = 255
    colored = _png(tmp_path / "color.png", color)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (ctrl, ["--hint", str(tmp_path / "missing.png")], "no such file"),
        (ctrl, ["--hint", str(small)], "is 20x20; the model's images are 28x28"),
        (ctrl, ["--hint", str(colored), "--hint-is-edges"], "3 different channels"),
        (ctrl, ["--hint", "mnist:test:9990..10005"], "has 10000 images"),
        (ctrl, ["--hint", "mnist:test:0", "--hint-is-edges"], "takes image files"),
        (ctrl, ["--hint", str(empty)], "holds no images"),
        (ctrl, [], "samples with --hint"),
        (ctrl, ["--hint", "mnist:test:0", "--cache-interval", "2"], "ControlNet adds fresh"),
        (ctrl, ["--hint", "mnist:test:0", "--control-start", "0.8", "--control-end", "0.2"],
         "start <= end"),
        (base, ["--hint", "mnist:test:0"], "takes no hint"),
        (base, ["--control-scale", "2"], "takes no hint"),
    ]  # fmt: skip
    for source, args, message in cases:
        result = sample(source, tmp_path / "out", *args, data_dir=data_dir)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    bad = invoke("train", "controlnet", "--base", ctrl, *CTRL, "--data-dir", data_dir)
    assert bad.exit_code == 2 and "is a ControlNet" in bad.output
    assert invoke("train", "controlnet", *CTRL).exit_code == 2  # no --base


def test_sdedit_and_inpaint_take_a_hint(ctrl: Path, tmp_path: Path, data_dir: Path):
    common = ("--model", ctrl, "--data-dir", data_dir, "--steps", "4")
    image = ("--image", "mnist:test:0")
    hint = ("--hint", "mnist:test:1")
    edit = last_line(invoke("edit", "sdedit", *image, *common, "--start", "2", *hint,
                            "--out", tmp_path / "s"))  # fmt: skip
    assert json.loads((edit / "edit.json").read_text())["hint"] == "mnist:test:1"
    last_line(invoke("edit", "inpaint", *image, *common, "--box", "0,0,28,14", *hint,
                     "-n", "2", "--out", tmp_path / "i"))  # fmt: skip
    for args, message in (
        (("sdedit", *image, *common, "--hint", "mnist:test:0..3"), "an edit takes one"),
        (("sdedit", *image, *common), "samples with --hint"),
        (("anagram", "1", "7", *common), "is a ControlNet"),
    ):
        result = invoke("edit", *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
