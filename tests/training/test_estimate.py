"""The time estimate before training: its arithmetic, when it warns, and that the probe
leaves training bit-identical."""

from pathlib import Path

import pytest
import torch
from torch import nn

from diffkit.config import TrainConfig
from diffkit.data import ImageData, TensorBatches
from diffkit.training import estimate as est_mod
from diffkit.training import train
from diffkit.training.distributed import DistInfo
from diffkit.training.estimate import Estimate, duration, small_preset_note, warning_text
from diffkit.training.loop import Trainer, _Hooks, _Where

CPU = torch.device("cpu")


def _objective(net, x, y, g):
    """Draws from the step's generator and from the global generator, like the real ones."""
    t = torch.randint(0, 1000, (x.shape[0],), generator=g)
    noise = torch.randn(x.shape, generator=g) + 0.01 * torch.randn_like(x)
    return (net(x + noise, t) - noise).pow(2).mean()


class _Net(nn.Module):
    """A few hundred weights with dropout: fast, and it draws from the global generator."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.drop, self.t = (
            nn.Conv2d(1, 1, 3, padding=1),
            nn.Dropout(0.1),
            nn.Linear(1, 1),
        )

    def forward(self, x, t):
        return self.drop(self.conv(x)) + self.t(t.float()[:, None] / 1000)[:, :, None, None]


def _setup(steps: int = 6):
    cfg = TrainConfig(epochs=1, max_steps=steps, batch_size=8, log_every=1, sample_every=0,
                      warmup_steps=0, seed=5)  # fmt: skip
    torch.manual_seed(0)
    model = _Net()
    g = torch.Generator().manual_seed(1)
    data = ImageData(torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=g), None)
    return cfg, model, TensorBatches(data, 8, seed=0, device=CPU)


def test_estimate_is_steps_times_batch_times_time_per_image():
    e = Estimate("cpu", steps=1000, batch_size=64, seconds_per_image=0.01, probe_seconds=1.0)
    assert e.seconds == pytest.approx(640.0)
    assert e.images_per_sec == pytest.approx(100.0)
    assert e.as_dict()["seconds"] == pytest.approx(640.0)


def test_warning_only_above_the_threshold_and_only_on_a_cpu():
    slow = Estimate("cpu", steps=18_750, batch_size=128, seconds_per_image=1 / 7, probe_seconds=1)
    text = warning_text(slow, "`--preset small` is sized for a CPU")
    assert text is not None and text.startswith("this run would take about 95 h on this CPU")
    assert "(7 img/s measured)" in text and text.endswith("`--preset small` is sized for a CPU")
    fast = Estimate("cpu", steps=2811, batch_size=64, seconds_per_image=1 / 300, probe_seconds=1)
    assert warning_text(fast) is None
    assert warning_text(Estimate("cuda", 18_750, 128, 1 / 7, 1)) is None
    assert duration(660) == "11 min" and duration(3.5 * 3600) == "3.5 h"


def test_the_trainer_emits_one_warning_from_a_measured_rate():
    cfg, model, batches = _setup(steps=1000)
    events = []
    where = _Where(CPU, None, None, {}, DistInfo(), None, "`--preset small` is sized for a CPU")
    trainer = Trainer(model, _objective, batches, cfg, where,
                      _Hooks(None, None, events.append, {}))  # fmt: skip
    trainer.estimate_time(seconds_per_image=1.0)  # 1000 steps x 8 images x 1 s: 2.2 h
    warnings = [e for e in events if e.kind == "warning"]
    assert len(warnings) == 1 and "about 2.2 h" in warnings[0].data["message"]
    assert [e.kind for e in events].count("estimate") == 1
    events.clear()
    trainer.estimate_time(seconds_per_image=0.5)  # 1.1 h: an estimate, no warning
    assert [e.kind for e in events] == ["estimate"]


def _weights_after(probe: bool, monkeypatch) -> tuple[dict, torch.Tensor, Estimate | None]:
    monkeypatch.setattr(est_mod, "MIN_STEPS", 0 if probe else 10**9)
    cfg, model, batches = _setup()
    torch.manual_seed(123)
    result = train(model, _objective, batches, cfg, device=CPU, autocast_dtype=None, run=None,
                   run_config={})  # fmt: skip
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return state, torch.get_rng_state(), result.estimate


def test_the_probe_leaves_training_bit_identical(monkeypatch):
    monkeypatch.delenv("DIFFKIT_NO_ESTIMATE", raising=False)
    with_probe, rng_with, est = _weights_after(True, monkeypatch)
    without, rng_without, none = _weights_after(False, monkeypatch)
    assert est is not None and est.seconds_per_image > 0 and none is None
    assert with_probe.keys() == without.keys()
    for k in with_probe:
        assert torch.equal(with_probe[k], without[k]), k
    assert torch.equal(rng_with, rng_without)


def test_the_environment_switches_it_off(monkeypatch):
    monkeypatch.setenv("DIFFKIT_NO_ESTIMATE", "1")
    _, _, est = _weights_after(True, monkeypatch)
    assert est is None


def test_estimate_false_switches_it_off(monkeypatch):
    monkeypatch.delenv("DIFFKIT_NO_ESTIMATE", raising=False)
    monkeypatch.setattr(est_mod, "MIN_STEPS", 0)
    cfg, model, batches = _setup()
    result = train(model, _objective, batches, cfg, device=CPU, autocast_dtype=None, run=None,
                   run_config={}, estimate=False)  # fmt: skip
    assert result.estimate is None


def test_short_runs_and_gpus_are_not_probed(monkeypatch):
    monkeypatch.delenv("DIFFKIT_NO_ESTIMATE", raising=False)
    assert not est_mod.wanted(CPU, est_mod.MIN_STEPS - 1)
    assert est_mod.wanted(CPU, est_mod.MIN_STEPS)
    assert not est_mod.wanted(torch.device("cuda"), 10**6)
    assert not est_mod.wanted(CPU, 10**6, distributed=True)


def test_the_small_preset_note_reads_the_benchmark_summary(tmp_path: Path):
    note = small_preset_note("ddpm")
    assert note is not None and note.startswith("`--preset small` trains in about ")
    assert small_preset_note("ldm") is None
    assert small_preset_note("ddpm", tmp_path / "missing.json") == (
        "`--preset small` is sized for a CPU"
    )


def test_the_probe_itself_keeps_the_model_and_the_random_state():
    _cfg, model, batches = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    x, y = next(iter(batches.epoch(0)))
    spi, spent = est_mod.probe(model, _objective, lambda m: torch.optim.AdamW(m.parameters()),
                               x, y, device=CPU)  # fmt: skip
    assert spi > 0 and spent >= 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_the_switch_is_not_reported_as_an_unknown_setting():
    from diffkit.config.resolve import unknown_env

    assert unknown_env(set(), {"DIFFKIT_NO_ESTIMATE": "1"}) == []
