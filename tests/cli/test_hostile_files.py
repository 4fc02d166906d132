"""Hostile files: crafted prepared datasets, corrupted EMA snapshots and config bombs.
Each invocation exits 2 with exactly one ``error:`` line on stderr, prints nothing on
stdout and leaves every file that already existed as it was (nothing new is written)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from diffkit.runs import load_checkpoint, save_checkpoint
from tests.cli.test_folder_cli import _pets
from tests.cli.util import TINY, invoke, last_line, refused

# ---------------------------------------------------------------------------------------
# Crafted prepared datasets: copies of a real one, each with one thing wrong


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _drop(key: str) -> Callable[[dict], None]:
    return lambda m: m.pop(key)


def _train(**changes) -> Callable[[dict], None]:
    return lambda m: m["splits"]["train"].update(changes)


MANIFESTS: dict[str, Callable[[dict], None]] = {
    "no-splits": _drop("splits"),
    "no-shape": _drop("shape"),
    "splits-list": lambda m: m.update(splits=list(m["splits"].values())),
    "split-list": lambda m: m["splits"].update(train=list(m["splits"]["train"].values())),
    "shape-object": lambda m: m.update(shape={"c": 3, "h": 16, "w": 16}),
    "shape-text": lambda m: m.update(shape=[3, "16", 16]),
    "shape-2d": lambda m: m.update(shape=[16, 16]),
    "count-text": _train(count="16"),
    "count-float": _train(count=16.5),
    "count-negative": _train(count=-16),
    "count-huge": _train(count=10**30),
    "count-more": _train(count=17),
    "shape-other": lambda m: m.update(shape=[3, 32, 32]),
    "images-path": _train(images="../../outside.u8"),
    "no-images": lambda m: m["splits"]["train"].pop("images"),
    "split-name": lambda m: m.update(splits={"valid": m["splits"]["train"]}),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    # a prepared folder (16 RGB 16x16 images, two classes) and damaged copies of it
    good = last_line(invoke("data", "prepare", f"folder:{_pets(root / 'pets')}", "--size",
                            "16", "--out", root / "good"))  # fmt: skip
    manifest = json.loads((good / "manifest.json").read_text())
    for name, change in MANIFESTS.items():
        shutil.copytree(good, root / name)
        m = json.loads(json.dumps(manifest))
        change(m)
        (root / name / "manifest.json").write_text(json.dumps(m))
    for name, text in (("not-json", "{"), ("deep-json", "[" * 100_000 + "]" * 100_000)):
        shutil.copytree(good, root / name)
        (root / name / "manifest.json").write_text(text)
    shutil.copytree(good, root / "truncated")
    images = root / "truncated" / "train-images.u8"
    images.write_bytes(images.read_bytes()[:-1])
    shutil.copytree(good, root / "label-range")  # a label past the classes, sha256 matching
    labels = (7).to_bytes(8, "little") * 16
    (root / "label-range" / "train-labels.i64").write_bytes(labels)
    _edit(root / "label-range", _train(sha256_labels=_sha(labels)))
    _bombs(root / "bombs")
    run = last_line(invoke("train", "ddpm", *TINY, "--snapshot-every-steps", "1", "--data-dir",
                           data_dir, "--runs-dir", root / "runs", "--name", "ema"))  # fmt: skip
    for name, (which, change) in RUNS.items():
        shutil.copytree(run, root / name)
        if which == "checkpoint":
            _edit_checkpoint(root / name / "checkpoints" / "last.safetensors", change)
        else:
            _edit_snapshot(root / name / "snapshots" / "step-0000002.safetensors", change)
    (root / "snap-foreign" / "snapshots" / "step-0000002.safetensors").write_bytes(b"PK\x03\x04zip")
    # a snapshot that claims 10^11 steps, and a checkpoint at that step
    long = root / "snap-long" / "snapshots"
    shutil.copy(long / "step-0000003.safetensors", long / "step-100000000000.safetensors")
    _edit_snapshot(long / "step-100000000000.safetensors",
                   _meta(first="4", last=str(10**11)))  # fmt: skip
    _edit_checkpoint(root / "snap-long" / "checkpoints" / "last.safetensors",
                     lambda s: s["position"].update(step=10**11))  # fmt: skip
    return {"root": root, "data": data_dir, "deep": "[" * 5000 + "]" * 5000}


def _bombs(folder: Path) -> None:
    """Config files that once ran out of memory or stack."""
    folder.mkdir()
    laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        laughs.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    (folder / "laughs.yaml").write_text("\n".join(laughs) + "\n")
    (folder / "merge.yaml").write_text("base: &b {lr: 0.001}\ntrain:\n  <<: *b\n")
    deep = 5000
    (folder / "deep.json").write_text('{"train": ' + "[" * deep + "]" * deep + "}")
    (folder / "deep-object.json").write_text(
        '{"train": ' + '{"a": ' * deep + "1" + "}" * deep + "}"
    )
    (folder / "deep.yaml").write_text("train: " + "[" * deep + "]" * deep + "\n")
    (folder / "deep-block.yaml").write_text("".join(" " * i + "a:\n" for i in range(1000)))
    (folder / "deep.toml").write_text("train = " + "[" * deep + "]" * deep + "\n")
    (folder / "deep-table.toml").write_text("train = " + "{a = " * deep + "1" + "}" * deep + "\n")
    (folder / "dotted.toml").write_text("train." + ".".join(["a"] * deep) + " = 1\n")
    (folder / "big.yaml").write_text("train:\n  lr: 0.001\n" + "# padding\n" * 120_000)
    (folder / "big.json").write_text('{"pad": "' + "x" * (1 << 20) + '"}')


def _meta(**changes: str | None) -> Callable[[dict, dict], None]:
    def change(meta: dict, tensors: dict) -> None:
        for key, value in changes.items():
            meta.pop(f"diffkit.snapshot.{key}")
            if value is not None:
                meta[f"diffkit.snapshot.{key}"] = value

    return change


def _first_tensor(change: Callable[[torch.Tensor], torch.Tensor | None]):
    def edit(meta: dict, tensors: dict) -> None:
        name = next(iter(tensors))
        new = change(tensors.pop(name))
        if new is not None:
            tensors[name] = new

    return edit


def _position(**changes) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        for key, value in changes.items():
            state["position"].pop(key)
            if value is not None:
                state["position"][key] = value

    return change


RUNS: dict[str, tuple[str, Callable]] = {
    "snap-no-last": ("snapshot", _meta(last=None)),
    "snap-no-first": ("snapshot", _meta(first=None)),
    "snap-text": ("snapshot", _meta(first="two")),
    "snap-huge": ("snapshot", _meta(last=str(10**30))),
    "snap-negative": ("snapshot", _meta(first="-1")),
    "snap-backwards": ("snapshot", _meta(first="3")),
    "snap-renamed": ("snapshot", _meta(first="1", last="1")),
    "snap-shape": ("snapshot", _first_tensor(lambda t: t.flatten()[:-1].clone())),
    "snap-dtype": ("snapshot", _first_tensor(lambda t: t.long())),
    "snap-missing": ("snapshot", _first_tensor(lambda t: None)),
    "snap-extra": ("snapshot", lambda meta, tensors: tensors.update(extra=torch.zeros(2))),
    "snap-foreign": ("snapshot", lambda meta, tensors: None),
    "snap-long": ("snapshot", lambda meta, tensors: None),
    "ckpt-no-position": ("checkpoint", lambda state: state.pop("position")),
    "ckpt-no-step": ("checkpoint", _position(step=None)),
    "ckpt-step-huge": ("checkpoint", _position(step=10**30)),
    "ckpt-step-negative": ("checkpoint", _position(step=-3)),
    "ckpt-step-text": ("checkpoint", _position(step="3")),
}


def _edit_snapshot(path: Path, change: Callable[[dict, dict], None]) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    change(meta, tensors)
    save_file(tensors, str(path), metadata=meta)


def _edit_checkpoint(path: Path, change: Callable[[dict], None]) -> None:
    ckpt = load_checkpoint(path)
    change(ckpt.train_state)
    save_checkpoint(path, ckpt)


def _edit(folder: Path, change: Callable[[dict], None]) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    change(m)
    (folder / "manifest.json").write_text(json.dumps(m))


TRAIN = "train ddpm --preset tiny --max-steps 1 --sample-every 0 --dataset prepared:{root}/"

CONFIG = "train ddpm --preset tiny --max-steps 1 --config {root}/bombs/"
DENOISER = "train denoiser --max-steps 1 --config {root}/bombs/"

EMA = "ema {root}/%s --decay 0.99"
SNAP = "snapshots/step-0000002.safetensors is not a weight snapshot of this run: "

CASES = [
    # corrupted EMA snapshots
    (EMA % "snap-no-last", SNAP + "its metadata has no diffkit.snapshot.last"),
    (EMA % "snap-no-first", SNAP + "its metadata has no diffkit.snapshot.first"),
    (EMA % "snap-text", SNAP + "its diffkit.snapshot.first 'two' is not a step from 0 to 1e+12"),
    (EMA % "snap-huge", SNAP + "its diffkit.snapshot.last '1000000000000000000000000000000' is"),
    (EMA % "snap-negative", SNAP + "its diffkit.snapshot.first '-1' is not a step"),
    (EMA % "snap-backwards", SNAP + "its steps 3..2 run backwards"),
    (EMA % "snap-renamed", SNAP + "it ends at step 1, its name says 2"),
    (
        EMA % "snap-shape",
        SNAP
        + "its tensors do not match the model: conv_in.bias is F32 [15], the model needs F32 [16]",
    ),
    (
        EMA % "snap-dtype",
        SNAP + "its tensors do not match the model: conv_in.bias is I64 [16], the model needs F32",
    ),
    (EMA % "snap-missing", SNAP + "its tensors do not match the model: conv_in.bias is missing"),
    (EMA % "snap-extra", SNAP + "its tensors do not match the model: unexpected tensor extra"),
    (EMA % "snap-foreign", SNAP),
    (EMA % "snap-long", "the post-hoc EMA of 100,000,000,000 steps needs about"),
    (EMA % "ckpt-no-position", "last.safetensors: its training state has no position"),
    (EMA % "ckpt-no-step", "training state position.step is missing, not a count from 0 to"),
    (EMA % "ckpt-step-huge", "position.step is 1000000000000000000000000000000, not a count"),
    (EMA % "ckpt-step-negative", "training state position.step is -3, not a count"),
    (EMA % "ckpt-step-text", "training state position.step is '3', not a count"),
    (TRAIN + "no-splits", "invalid manifest.json: splits: Field required"),
    (TRAIN + "no-shape", "invalid manifest.json: shape: Field required"),
    (TRAIN + "splits-list", "splits: Input should be a valid dictionary"),
    (TRAIN + "split-list", "splits.train: Input should be a valid dictionary"),
    (TRAIN + "shape-object", "shape: Input should be a valid list"),
    (TRAIN + "shape-text", "shape.1: Input should be a valid integer"),
    (TRAIN + "shape-2d", "shape: List should have at least 3 items"),
    (TRAIN + "count-text", "splits.train.count: Input should be a valid integer"),
    (TRAIN + "count-float", "splits.train.count: Input should be a valid integer"),
    (TRAIN + "count-negative", "splits.train.count: Input should be greater than or equal to 1"),
    (TRAIN + "count-huge", "splits.train.count: Input should be less than or equal to"),
    (TRAIN + "count-more", "train-images.u8 holds 12,288 bytes, the manifest says 13,056"),
    (TRAIN + "shape-other", "train-images.u8 holds 12,288 bytes, the manifest says 49,152"),
    (TRAIN + "images-path", "splits.train.images: String should match pattern"),
    (TRAIN + "no-images", "splits.train.images: Field required"),
    (TRAIN + "split-name", "splits.valid.[key]: Input should be 'train' or 'test'"),
    (TRAIN + "not-json", "unreadable manifest.json"),
    (TRAIN + "deep-json", "unreadable manifest.json"),
    (TRAIN + "truncated", "train-images.u8 holds 12,287 bytes, the manifest says 12,288"),
    # config bombs
    (CONFIG + "laughs.yaml", "laughs.yaml uses a YAML alias (*name); config files may not"),
    (CONFIG + "merge.yaml", "merge.yaml uses a YAML alias"),
    (CONFIG + "deep.json", "deep.json nests deeper than 64 levels"),
    (CONFIG + "deep-object.json", "deep-object.json nests deeper than 64 levels"),
    (CONFIG + "deep.yaml", "deep.yaml nests deeper than 64 levels"),
    (CONFIG + "deep-block.yaml", "deep-block.yaml nests deeper than 64 levels"),
    (CONFIG + "deep.toml", "deep.toml nests deeper than 64 levels"),
    (CONFIG + "deep-table.toml", "deep-table.toml nests deeper than 64 levels"),
    (CONFIG + "dotted.toml", "dotted.toml nests deeper than 64 levels"),
    (CONFIG + "big.yaml", "big.yaml is larger than 1 MiB, the limit for a config file"),
    (CONFIG + "big.json", "big.json is larger than 1 MiB"),
    (DENOISER + "laughs.yaml", "laughs.yaml uses a YAML alias"),
    (DENOISER + "deep.json", "deep.json nests deeper than 64 levels"),
    (DENOISER + "deep-table.toml", "deep-table.toml nests deeper than 64 levels"),
    (DENOISER + "big.yaml", "big.yaml is larger than 1 MiB"),
    ("DIFFKIT_TRAIN__LR={deep} train ddpm --preset tiny", "DIFFKIT_TRAIN__LR nests deeper than 64"),
    ("DIFFKIT_TRAIN__LR={deep} train denoiser", "DIFFKIT_TRAIN__LR nests deeper than 64"),
    (TRAIN + "label-range", "train-labels.i64 holds label 7; the manifest names 2 classes"),
]


def _id(line: str) -> str:
    words = line.split()
    if "=" in words[0]:
        return f"{words[1]}-{words[0][:17]}"
    where = words[1] if words[0] == "ema" else words[-1]
    return f"{words[0]}-{Path(where).name}"


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[_id(c[0]) for c in CASES])
def test_hostile_file(world, line: str, expected: str, monkeypatch):
    line_ = refused(line, world, monkeypatch)
    assert expected in line_, line_
