import copy
import itertools

import pytest
import torch

from diffkit.config import TrainConfig
from diffkit.training.ema import EMA
from diffkit.training.optim import can_fuse, lr_at, make_optimizer


def test_warmup_then_cosine_to_final_factor():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, lr_schedule="cosine", lr_final_factor=0.1)
    lrs = [lr_at(s, cfg, 110) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[110] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.55)


def test_constant_and_exponential():
    const = TrainConfig(lr=0.5, warmup_steps=0, lr_schedule="constant")
    assert {lr_at(s, const, 100) for s in range(100)} == {0.5}
    exp = TrainConfig(lr=1.0, warmup_steps=0, lr_schedule="exponential", lr_final_factor=0.01)
    assert lr_at(50, exp, 100) == pytest.approx(0.1)
    assert lr_at(100, exp, 100) == pytest.approx(0.01)


def test_ema_warmup_and_update():
    net = torch.nn.Linear(2, 1, bias=False)
    ema = EMA(net, decay=0.9, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10_000) == 0.9
    with torch.no_grad():
        net.weight.fill_(1.0)
        ema.shadow.weight.fill_(0.0)
    ema.update(net, num_updates=10_000)
    torch.testing.assert_close(ema.shadow.weight, torch.full((1, 2), 0.1))
    assert not any(p.requires_grad for p in ema.shadow.parameters())


class _FakeParam:
    """Stands for a parameter where it lives (CUDA or not) without a GPU."""

    def __init__(self, cuda: bool, floating: bool = True) -> None:
        self.is_cuda, self._floating = cuda, floating

    def is_floating_point(self) -> bool:
        return self._floating


def test_fused_adamw_only_for_floating_cuda_parameters():
    assert can_fuse([_FakeParam(cuda=True), _FakeParam(cuda=True)])
    assert not can_fuse([_FakeParam(cuda=True), _FakeParam(cuda=False)])  # one on the CPU
    assert not can_fuse([_FakeParam(cuda=True, floating=False)])
    assert not can_fuse([])
    assert not can_fuse(list(torch.nn.Linear(2, 2).parameters()))
    assert not can_fuse(list(torch.nn.Linear(2, 2, device="meta").parameters()))


def test_cpu_optimizer_is_torch_default_adamw():
    """On the CPU, make_optimizer is plain AdamW (not fused): the same steps, bit for bit."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    ref = copy.deepcopy(net)
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    opt = make_optimizer(net, cfg)
    assert not opt.defaults["fused"] and opt.defaults["foreach"] is None
    plain = torch.optim.AdamW(
        [{"params": [p for p in ref.parameters() if p.ndim >= 2], "weight_decay": 0.1},
         {"params": [p for p in ref.parameters() if p.ndim < 2], "weight_decay": 0.0}],
        lr=1e-2, betas=(0.9, 0.999),
    )  # fmt: skip
    x = torch.randn(16, 4)
    for model, o in ((net, opt), (ref, plain)):
        for _ in range(3):
            o.zero_grad()
            model(x).pow(2).mean().backward()
            o.step()
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_optimizer_is_fused():
    net = torch.nn.Linear(4, 2, device="cuda")
    assert make_optimizer(net, TrainConfig()).defaults["fused"] is True
