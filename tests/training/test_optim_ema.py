import itertools

import pytest
import torch

from diffkit.config import TrainConfig
from diffkit.training.ema import EMA
from diffkit.training.optim import lr_at


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
