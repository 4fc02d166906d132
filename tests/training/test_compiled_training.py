"""Training with ``compile_backend``: the numbers, checkpoints and resumes of eager training.

Uses the ``aot_eager`` backend (see tests/nn/test_compile.py for why not inductor).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.backends.common import aot_autograd

from diffkit.config import TrainConfig
from diffkit.data import ImageData, TensorBatches
from diffkit.runs import RunDir, load_checkpoint, read_metrics
from diffkit.training import TrainEvent, train

pytestmark = pytest.mark.compile


class Tiny(nn.Module):
    """net(x: (B, 1, 8, 8), t: (B,)) -> (B, 1, 8, 8): a conv, a time bias, a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.time = nn.Linear(1, 8)
        self.out = nn.Conv2d(8, 1, 1)

    def forward(self, x, t, cond=None):
        bias = self.time(t.float()[:, None] / 1000)[:, :, None, None]  # (B, 8, 1, 1)
        return self.out(F.silu(self.conv(x) + bias))


def objective(net, x, y, generator):
    noise = torch.randn(x.shape, generator=generator)
    t = torch.randint(0, 1000, (x.shape[0],), generator=generator)
    return (net(x + noise, t) - noise).pow(2).mean()


def run_training(tmp_path: Path, name: str, backend=None, resume=None, **cfg):
    """(result, run, events) of training a fresh Tiny (seed 0) on fixed random images."""
    torch.manual_seed(0)
    model = Tiny()
    config = TrainConfig(**({"epochs": 2, "batch_size": 8, "log_every": 1, "sample_every": 0,
                             "warmup_steps": 0, "ema_decay": 0.9,
                             # constant: a part run (max_steps) has the full run's LRs
                             "lr_schedule": "constant"} | cfg))  # fmt: skip
    images = torch.randint(0, 256, (32, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    batches = TensorBatches(ImageData(images.to(torch.uint8), None), 8, seed=0,
                            device=torch.device("cpu"))  # fmt: skip
    run = resume or RunDir.create(tmp_path, "ddpm", name)
    ckpt = load_checkpoint(run.last_checkpoint) if resume is not None else None
    events: list[TrainEvent] = []
    result = train(model, objective, batches, config, device=torch.device("cpu"),
                   autocast_dtype=None, run=run, run_config={"method": "test"}, resume=ckpt,
                   on_event=events.append, compile_backend=backend)  # fmt: skip
    return result, run, events


def test_compiled_training_agrees_with_eager_and_resumes_eagerly(tmp_path: Path):
    eager, eager_run, _ = run_training(tmp_path, "eager")
    part, run, _ = run_training(tmp_path, "compiled", "aot_eager", max_steps=3)
    assert eager.compiled is None and part.compiled is True
    ckpt = load_checkpoint(run.last_checkpoint)
    assert not any("_orig_mod" in key for key in ckpt.tensors)
    Tiny().load_state_dict(ckpt.section("model"))  # strict: a compiled run loads eagerly
    done, _, _ = run_training(tmp_path, "compiled", resume=run)  # resumed without compile
    assert done.reason == "finished" and done.step == eager.step == 8

    a, b = load_checkpoint(eager_run.last_checkpoint), load_checkpoint(run.last_checkpoint)
    assert a.tensors.keys() == b.tensors.keys()
    for key in a.tensors:
        assert torch.allclose(a.tensors[key], b.tensors[key], atol=1e-5), key
    losses = [[r["loss"] for r in read_metrics(r.metrics)] for r in (eager_run, run)]
    assert torch.allclose(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-5)


def _graph_as_is(gm, example_inputs):
    return gm.forward


def _no_backward_compiler(gm, example_inputs):
    raise RuntimeError("no backward compiler")


def _no_compiler(gm, example_inputs):
    raise RuntimeError("no compiler")


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        (_no_compiler, "no compiler"),
        (aot_autograd(fw_compiler=_graph_as_is, bw_compiler=_no_backward_compiler),
         "no backward compiler"),
    ],
    ids=["forward", "backward"],
)  # fmt: skip
def test_a_compiler_failure_falls_back_to_eager_with_one_warning(tmp_path: Path, backend, why):
    """The failed step is run again eagerly with the same random numbers, so the run is
    the eager one exactly; the backward graph is compiled lazily, at the first backward."""
    _, eager_run, _ = run_training(tmp_path, "eager", max_steps=3)
    result, run, events = run_training(tmp_path, "fails", backend, max_steps=3)
    warnings = [e.data["message"] for e in events if e.kind == "warning"]
    assert len(warnings) == 1 and why in warnings[0] and "eagerly" in warnings[0]
    assert result.reason == "finished" and result.compiled is False
    a, b = load_checkpoint(eager_run.last_checkpoint), load_checkpoint(run.last_checkpoint)
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), key


def test_a_failure_within_accumulated_micro_batches_retries_the_whole_step(tmp_path: Path):
    """With 2 micro-batches the backward compiler fails in the first one's backward; the
    whole step (both micro-batches, from zeroed gradients and the step's seed) runs again
    eagerly, so the run is the eager one with the same grad_accum exactly."""
    backend = aot_autograd(fw_compiler=_graph_as_is, bw_compiler=_no_backward_compiler)
    _, eager_run, _ = run_training(tmp_path, "eager", max_steps=3, grad_accum=2)
    result, run, events = run_training(tmp_path, "fails", backend, max_steps=3, grad_accum=2)
    assert [e.kind for e in events].count("warning") == 1 and result.compiled is False
    a, b = load_checkpoint(eager_run.last_checkpoint), load_checkpoint(run.last_checkpoint)
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), key
