"""A table of hostile invocations: each exits 2 with exactly one ``error:`` line on stderr,
prints nothing on stdout, and leaves every file that already existed as it was."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest

from diffkit.runs import load_checkpoint, save_checkpoint
from tests.cli.util import TINY, invoke, last_line, refused


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    """A trained run, one samples folder, a plain file and bad config files."""
    root = tmp_path_factory.mktemp("world")
    run = last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir",
                           root / "runs", "--name", "fuzz"))  # fmt: skip
    samples = last_line(invoke("sample", run, "-n", "12", "--steps", "2"))
    (root / "file").write_text("not a folder")
    (root / "train5.json").write_text('{"train": 5}')
    (root / "bad.toml").write_text("train = [")
    (root / "trian.yaml").write_text("trian: {epochs: 1}\n")
    (root / "evil.pth").write_bytes(pickle.dumps(_Evil(root / "pwned")))
    (root / "broken").mkdir()
    (root / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    tampered = root / "tampered"
    shutil.copytree(run, tampered)
    ckpt = load_checkpoint(tampered / "checkpoints" / "last.safetensors")
    ckpt.train_state["position"]["step"] = "three"
    save_checkpoint(tampered / "checkpoints" / "last.safetensors", ckpt)
    return {"run": run, "samples": samples, "root": root, "data": data_dir, "tampered": tampered}


class _Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


CASES = [
    # usage errors from the parser
    ("train ddpm --epochs abc", "'--epochs'"),
    ("train ddpm --lr 1e-3x", "'--lr'"),
    ("train ddpm --device tpu", "'auto', 'cpu', 'cuda'"),
    ("sample {run} --sampler foo", "'--sampler'"),
    ("sample {run} --cache-interval abc", "'--cache-interval'"),
    ("sample {run} --seed 1180591620717411303424", "'--seed'"),
    ("sample {run} --solver dopri5 --rtol nan", "--rtol"),
    ("sample {run} --solver dopri5 --rtol 1e-30", "'--rtol'"),
    # accepted before, wrong
    ("sample {run} --steps 0", "steps must be between 1"),
    ("sample {run} --eta nan", "--eta"),
    ("sample {run} --eta inf", "--eta"),
    ("sample {run} --guidance nan", "--guidance"),
    ("eval {run} --steps 0 -n 10", "steps must be between 1"),
    ("train ddpm --preset tiny --config {root}/train5.json", "invalid train"),
    ("train ddpm --preset tiny --config {root}/train5.json --epochs 1", "invalid train"),
    ("train ddpm --preset tiny --config {root}/bad.toml", "cannot parse"),
    ("train ddpm --preset tiny --config {root}/trian.yaml", "invalid trian"),
    ("train ddpm --preset tiny --lr -1", "invalid train.lr"),
    # sizes
    ("sample {run} -n 1000000000000", "needs about"),
    ("sample {run} --batch-size 1000000000000 -n 1000000000000", "needs about"),
    # outputs
    ("sample {run} -n 2 --steps 1 --out {root}/file/x", "is a file"),
    ("sample {run} -n 2 --steps 1 --out {samples}", "already exists"),
    ("sample {run} -n 2 --steps 1 --out {run} --overwrite", "not a samples folder"),
    ("train ddpm --preset tiny --runs-dir {root}/file", "is a file"),
    ("train vae --runs-dir {root}/file/sub", "is a file"),
    ("reflow make-pairs {run} --runs-dir {root}/file", "is a file"),
    # models and runs
    ("reflow make-pairs {run}", "reflow needs a rectified flow"),
    ("train ddpm --resume {run} --lr 1", "cannot change"),
    ("train rf --resume {run}", "resume it with"),
    ("train ddpm --resume {root}", "not a run folder"),
    ("sample {root}/nothing", "no run or checkpoint"),
    ("sample {root}/file", "cannot read checkpoint"),
    ("eval {samples} --dataset nope", "unknown dataset"),
    (
        "eval {samples} --features inception --inception-weights {root}/evil.pth",
        "cannot load InceptionV3 weights",
    ),
    ("train ddpm --preset tiny --dataset folder:{root}/broken", "unreadable"),
    ("train ddpm --resume {tampered}", "training state invalid position.step"),
    ("DIFFKIT_TRAIN=5 train ddpm --preset tiny", "invalid train"),
    ("DIFFKIT_FLOW__LOGIT_MEAN=nan train rf --preset tiny", "invalid flow.logit_mean"),
    ("DIFFKIT_TRAIN__LR=NaN train ddpm --preset tiny", "invalid train.lr"),
    ("DIFFKIT_RUNS_DIR={root}/file train ddpm --preset tiny", "is a file"),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_invocation(world, line: str, expected: str, monkeypatch):
    assert expected in refused(line, world, monkeypatch)
    assert not (world["root"] / "pwned").exists()
