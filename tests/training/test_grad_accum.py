"""Gradient accumulation (``train.grad_accum``): K micro-batches make the step of one batch.

The objective here draws no random numbers, so K micro-batches must give the K=1 run to
round-off; the real objectives draw theirs per micro-batch and agree only in distribution.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from diffkit.config import TrainConfig
from diffkit.data import ImageData, TensorBatches
from diffkit.runs import RunDir, load_checkpoint
from diffkit.training import TrainEvent, train

CPU = torch.device("cpu")
STEPS = 8  # 64 rows in batches of 16: two epochs


def regression(net: nn.Module, x: Tensor, y: Tensor | None, generator: torch.Generator) -> Tensor:
    """MSE to a fixed function of the input and its label: no random draws."""
    assert y is not None and y.shape[0] == x.shape[0]  # the labels are split with x
    target = torch.stack([x[:, :3].sum(1), x[:, 3:].prod(1), y.float() / 4], dim=1)  # (B, 3)
    return (net(x) - target).pow(2).mean()


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 3))


def make_batches(batch_size: int = 16) -> TensorBatches:
    g = torch.Generator().manual_seed(1)
    data = ImageData(torch.randn(64, 6, generator=g), torch.randint(0, 4, (64,), generator=g))
    return TensorBatches(data, batch_size, seed=0, device=CPU)


def config(**fields) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 16, "lr": 1e-2, "warmup_steps": 0, "log_every": 1,
            "sample_every": 0, "ema_decay": 0.9}  # fmt: skip
    return TrainConfig(**(base | fields))


def run(tmp_path: Path, k: int, **fields) -> tuple[nn.Module, list[float], RunDir]:
    """(the trained net, the logged losses, its run folder) with ``grad_accum`` k."""
    net, events = make_net(), []
    folder = RunDir.create(tmp_path, "test", f"k{k}")
    result = train(net, regression, make_batches(), config(grad_accum=k, **fields), device=CPU,
                   autocast_dtype=None, run=folder, run_config={"method": "test"},
                   on_event=events.append)  # fmt: skip
    assert result.reason == "finished"
    losses = [e.data["loss"] for e in events if isinstance(e, TrainEvent) and e.kind == "log"]
    return net, losses, folder


@pytest.mark.parametrize("k", [2, 4, 16])
def test_micro_batches_give_the_weights_of_whole_batches(tmp_path: Path, k: int):
    # No clip here: it would rescale a wrong gradient to the right norm (the next test
    # clips).
    one, losses_one, run_one = run(tmp_path, 1, grad_clip=None)
    many, losses_many, run_many = run(tmp_path, k, grad_clip=None)
    for (name, a), b in zip(one.state_dict().items(), many.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)
    # The last step's gradient is the whole batch's, not k times it: AdamW is blind to a
    # constant scale, so the weights alone would not tell.
    for a, b in zip(one.parameters(), many.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-6, rtol=0)
    # One logged loss per step, the batch's (the mean over its micro-batches).
    assert len(losses_many) == STEPS
    torch.testing.assert_close(torch.tensor(losses_many), torch.tensor(losses_one), rtol=1e-6,
                               atol=0)  # fmt: skip
    # One optimizer step and one position step per batch; the EMA is the same too.
    a, b = load_checkpoint(run_one.last_checkpoint), load_checkpoint(run_many.last_checkpoint)
    pa, pb = (dict(c.train_state["position"], elapsed=None) for c in (a, b))
    assert pb == pa and pb["step"] == STEPS and b.tensors["optim.0.step"] == STEPS
    for key in a.tensors:
        torch.testing.assert_close(b.tensors[key], a.tensors[key], atol=1e-6, rtol=0, msg=key)


def test_micro_batches_match_a_hand_written_step(tmp_path: Path):
    """Three steps of the loop with 4 micro-batches against three written out: the whole
    batch's loss, one backward, the clip, one AdamW step."""
    cfg = config(grad_accum=4, max_steps=3, grad_clip=0.5, weight_decay=0.1, lr_schedule="constant")
    net = make_net()
    ref = copy.deepcopy(net)
    train(net, regression, make_batches(), cfg, device=CPU, autocast_dtype=None, run=None,
          run_config={})  # fmt: skip

    matrices = [p for p in ref.parameters() if p.ndim >= 2]
    vectors = [p for p in ref.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))  # constant, no warm-up
    batches = make_batches().epoch(0)
    for _ in range(3):
        x, y = next(batches)
        opt.zero_grad()
        regression(ref, x, y, torch.Generator()).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
    for a, b in zip(ref.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
        torch.testing.assert_close(b.grad, a.grad, atol=1e-6, rtol=0)


def test_a_batch_size_that_k_does_not_divide_is_refused():
    with pytest.raises(ValidationError, match=r"batch_size 30 is not divisible by \S+ 4"):
        TrainConfig(batch_size=30, grad_accum=4)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        TrainConfig(grad_accum=0)
    assert TrainConfig(batch_size=32, grad_accum=4).grad_accum == 4


def test_the_loop_refuses_batches_that_do_not_split(tmp_path: Path):
    """A direct caller whose batches are not cfg.batch_size rows gets a plain error, not
    micro-batches of unequal weight."""
    with pytest.raises(ValueError, match="a batch of 6 does not split into 4"):
        train(make_net(), regression, make_batches(batch_size=6), config(grad_accum=4),
              device=CPU, autocast_dtype=None, run=None, run_config={})  # fmt: skip
