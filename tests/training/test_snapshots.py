"""Post-hoc EMA from weight snapshots: closed-form coefficients, the online EMA rebuilt to
round-off, resumes that cover every step once."""

from pathlib import Path

import pytest
import torch
from torch import nn

from diffkit.config import TrainConfig
from diffkit.data import ImageData, TensorBatches
from diffkit.runs import RunDir, load_checkpoint
from diffkit.training import train
from diffkit.training.ema import EMA
from diffkit.training.snapshots import (
    ema_coefficients,
    list_snapshots,
    posthoc_checkpoint,
    posthoc_ema,
    snapshot_path,
)


@pytest.mark.parametrize("warmup", [False, True])
def test_coefficients_are_the_ema_recursion(warmup: bool):
    """sum_t c_t theta_t equals the EMA's own update rule run over the same sequence."""
    thetas = torch.randn(31, dtype=torch.float64)
    ema = EMA(nn.Linear(1, 1, bias=False), 0.9, warmup)
    s = thetas[0]
    for n in range(30):
        d = ema.decay_at(n)
        s = d * s + (1 - d) * thetas[n + 1]
    c = ema_coefficients(0.9, warmup, 30)
    assert c.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (c * thetas).sum().item() == pytest.approx(s.item(), abs=1e-12)
    assert ema_coefficients(0.9, warmup, 0).tolist() == [1.0]  # no update: the init


def _train(tmp: Path, run: RunDir | None = None, resume=None, **cfg) -> RunDir:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.Conv2d(4, 1, 1))
    data = ImageData(torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8), None)
    batches = TensorBatches(data, 8, seed=0, device=torch.device("cpu"))
    config = TrainConfig(batch_size=8, sample_every=0, warmup_steps=0, lr=1e-2,
                         lr_schedule="constant", **cfg)  # fmt: skip
    run = run or RunDir.create(tmp, "ddpm", "snap")

    def objective(net, x, y, g):
        return (net(x) - x.flip(-1)).pow(2).mean()

    run_config = {"train": config.model_dump(mode="json")}
    train(model, objective, batches, config, device=torch.device("cpu"), autocast_dtype=None,
          run=run, run_config=run_config, resume=resume)  # fmt: skip
    return run


def _ema(run: RunDir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run.last_checkpoint).section("ema")


def test_snapshots_every_step_rebuild_the_online_ema(tmp_path: Path):
    run = _train(tmp_path, epochs=3, ema_decay=0.9, snapshot_every_steps=1)
    snaps = list_snapshots(run.snapshots)
    assert [(s.first, s.last) for s in snaps] == [(0, 0)] + [(t, t) for t in range(1, 13)]
    online = _ema(run)
    for warmup in (True, False):  # the run's own setting matches; the other does not
        rebuilt = posthoc_ema(snaps, 0.9, warmup)
        err = max((rebuilt[k] - online[k]).abs().max().item() for k in rebuilt)
        assert (err < 1e-6) == warmup, err


def _err(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_sparse_snapshots_err_second_order_in_their_span(tmp_path: Path):
    """Box means every k steps for an EMA of half-life ~13.5 steps: the error shrinks ~k^2
    and stays far below the difference to another decay."""
    rebuilt = {}
    for every in (1, 2, 4):
        run = _train(tmp_path, epochs=10, snapshot_every_steps=every, ema_decay=0.95,
                     ema_warmup=False)  # fmt: skip
        rebuilt[every] = posthoc_ema(list_snapshots(run.snapshots), 0.95, False)
    exact = _ema(run)
    assert _err(rebuilt[1], exact) < 1e-6
    err2, err4 = _err(rebuilt[2], exact), _err(rebuilt[4], exact)
    other = _err(posthoc_ema(list_snapshots(run.snapshots), 0.8, False), exact)
    assert err4 > 3 * err2 and err2 < other / 100, (err2, err4, other)


def test_snapshots_are_flushed_at_checkpoints(tmp_path: Path):
    run = _train(tmp_path, epochs=4, snapshot_every_steps=3, ema_decay=0.95)
    snaps = list_snapshots(run.snapshots)
    # every 3 steps, and at the end of each epoch of 4 steps (its checkpoint)
    assert [(s.first, s.last) for s in snaps][:4] == [(0, 0), (1, 3), (4, 4), (5, 6)]
    assert [s.last for s in snaps] == [0, 3, 4, 6, 8, 9, 12, 15, 16]
    with pytest.raises(ValueError, match="no snapshot ends at step 5"):
        posthoc_ema(snaps, 0.95, True, steps=5)
    assert posthoc_ema(snaps, 0.95, True, steps=4).keys() == posthoc_ema(snaps, 0.95, True).keys()


def test_a_resume_prunes_later_snapshots_and_misses_no_step(tmp_path: Path):
    once = _train(tmp_path, epochs=3, snapshot_every_steps=1, ema_decay=0.9)
    run = _train(tmp_path, epochs=1, snapshot_every_steps=1, ema_decay=0.9)
    # a snapshot written after the last checkpoint by a run that then crashed
    stale = snapshot_path(run.snapshots, 7)
    stale.write_bytes(snapshot_path(run.snapshots, 4).read_bytes())
    resume = load_checkpoint(run.last_checkpoint)
    _train(tmp_path, run=run, resume=resume, epochs=3, snapshot_every_steps=1, ema_decay=0.9)
    snaps = list_snapshots(run.snapshots)
    assert [s.last for s in snaps] == list(range(13))
    rebuilt, online = posthoc_ema(snaps, 0.9, True), _ema(once)
    assert max((rebuilt[k] - online[k]).abs().max().item() for k in rebuilt) < 1e-6


def test_posthoc_checkpoint_replaces_the_ema_weights_only(tmp_path: Path):
    run = _train(tmp_path, epochs=2, snapshot_every_steps=2, ema_decay=0.9)
    out = posthoc_checkpoint(run.path, 0.5)
    assert out == run.checkpoints / "ema-0.5.safetensors"
    last, new = load_checkpoint(run.last_checkpoint), load_checkpoint(out)
    assert new.section("model").keys() == last.section("model").keys()
    assert all(torch.equal(v, last.tensors[f"model.{k}"]) for k, v in new.section("model").items())
    assert not any(k.startswith("optim.") for k in new.tensors)
    assert new.train_state["posthoc_ema"] == {"decay": 0.5, "warmup": True, "step": 8, "epoch": 2}
    want = posthoc_ema(list_snapshots(run.snapshots), 0.5, True)
    assert all(torch.equal(new.tensors[f"ema.{k}"], v) for k, v in want.items())


def test_runs_without_usable_snapshots_are_refused(tmp_path: Path):
    run = _train(tmp_path, epochs=1, ema_decay=0.9)
    with pytest.raises(ValueError, match="no snapshots/"):
        posthoc_checkpoint(run.path, 0.5)
    run.snapshots.mkdir()
    with pytest.raises(ValueError, match="do not start at step 0"):
        posthoc_checkpoint(run.path, 0.5)
    gappy = _train(tmp_path, epochs=1, snapshot_every_steps=1, ema_decay=0.9)
    snapshot_path(gappy.snapshots, 2).unlink()
    with pytest.raises(ValueError, match=r"miss steps 2\.\.2"):
        posthoc_checkpoint(gappy.path, 0.5)
    snapshot_path(gappy.snapshots, 3).write_bytes(b"not a snapshot")
    with pytest.raises(ValueError, match="is not a weight snapshot"):
        posthoc_checkpoint(gappy.path, 0.5)
