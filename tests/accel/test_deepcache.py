"""DeepCache: exactness at interval 1, clean removal, cheaper cached calls, schedules, and
every sampler family (DDPM, DDIM, probability-flow ODE, rectified flow; CFG; latent UNet)."""

from __future__ import annotations

import itertools
from contextlib import nullcontext

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from diffkit.accel.deepcache import (
    CacheConfig,
    DeepCache,
    branch_modules,
    full_calls,
    quadratic_schedule,
)
from diffkit.config.model import UNetConfig
from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import DDPMRunConfig, FlowRunConfig
from diffkit.methods.load import pipeline_for
from diffkit.nn.build import build_model
from diffkit.nn.unet import UNet


def _randomize(net: nn.Module) -> nn.Module:
    """Fresh UNets end in a zero-initialised conv (output 0): give every weight noise so
    cached and uncached outputs can differ at all."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return net.eval()


def pipeline(kind=DDPMRunConfig, **overrides):
    cfg = resolve_run_config(kind, {"preset": "tiny", **overrides})
    return pipeline_for(cfg, _randomize(build_model(cfg.model)), torch.device("cpu"), None)


def sample(pipe, n: int, cache: CacheConfig | None = None, stats: dict | None = None, **kw):
    """``pipe.sample`` with DeepCache attached from the outside, reset for every batch;
    ``stats`` receives the network calls per batch and the full ones among them."""
    sampler = kw.get("sampler") or pipe.DEFAULT_SAMPLER
    dc = DeepCache.of(pipe, cache, sampler, pipe.check(sampler, kw.get("steps"))) if cache else None
    with dc or nullcontext():
        result = pipe.sample(n, on_batch_start=dc.reset if dc else None, **kw)
    if stats is not None:
        stats.update(nfe=result.nfe, full_nfe=dc.mean_full if dc else result.nfe)
    return result.images


def unet(**kw) -> UNet:
    cfg = UNetConfig(base_channels=16, channel_mults=(1, 2, 2), attention_levels=(1,),
                     norm_groups=4, image_size=16, **kw)  # fmt: skip
    return _randomize(UNet(cfg))


def calls_of(net: UNet, dc: DeepCache, count: int, x: torch.Tensor) -> list[torch.Tensor]:
    t = torch.full((x.shape[0],), 500.0)
    with dc:
        return [net(x, t) for _ in range(count)]


def test_interval_one_is_exact_for_every_sampler_family():
    ddpm = pipeline(**{"model.num_classes": 3})
    labels = torch.tensor([0, 1, 2, 0])
    for sampler in ("ddpm", "ddim", "dpm++2m", "heun"):
        for w in (1.0, 3.0):  # plain conditional and a batched CFG call
            kw = {"sampler": sampler, "steps": 4, "labels": labels, "guidance": w, "seed": 3}
            ref = sample(ddpm, 4, **kw)
            assert torch.equal(sample(ddpm, 4, cache=CacheConfig(1, branch=2), **kw), ref)
            assert not torch.equal(sample(ddpm, 4, cache=CacheConfig(2, branch=2), **kw), ref)
    flow = pipeline(FlowRunConfig)
    for sampler in ("euler", "rk4"):
        ref = sample(flow, 3, sampler=sampler, steps=3)
        for branch in (1, 2, 3):
            out = sample(flow, 3, sampler=sampler, steps=3, cache=CacheConfig(1, branch=branch))
            assert torch.equal(out, ref)


def test_cached_calls_match_a_hand_built_shallow_pass():
    """A cached call equals the network run with the deep modules' outputs frozen at the
    last full call: the definition, checked against a manual monkeypatch-free replay."""
    net = unet()
    x0, x1 = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    t = torch.full((2,), 300.0)
    dc = DeepCache(net, CacheConfig(interval=2, branch=2))
    recorded = {}
    deep, _ = branch_modules(net, 2)
    hooks = [m.register_forward_hook(lambda m, a, o: recorded.setdefault(m, o)) for m in deep]
    net(x0, t)
    for h in hooks:
        h.remove()
    frozen = [m.register_forward_hook(lambda m, a, o: recorded[m]) for m in deep]
    expected = net(x1, t)
    for h in frozen:
        h.remove()
    with dc:
        full = net(x0, t)
        cached = net(x=x1, t=t)  # keyword calls are counted too
    assert torch.equal(full, net(x0, t))
    assert torch.allclose(cached, expected, atol=1e-6)
    assert not torch.allclose(cached, net(x1, t), atol=1e-4)
    assert (dc.calls, dc.full) == (0, 0)  # exit resets the counters


def test_hooks_are_removed_and_the_model_is_unchanged():
    net = unet(num_classes=3)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x, t = torch.randn(2, 1, 16, 16), torch.full((2,), 100.0)
    before = net(x, t)

    def hooks(m: nn.Module) -> int:
        return len(m._forward_hooks) + len(m._forward_pre_hooks)

    dc = DeepCache(net, CacheConfig(interval=3, branch=1, features="linear"))
    with dc:
        for _ in range(5):
            net(torch.randn(2, 1, 16, 16), t)
        assert sum(hooks(m) for m in net.modules()) > 0
    with pytest.raises(RuntimeError, match="boom"), dc:
        net(x, t)
        raise RuntimeError("boom")
    assert sum(hooks(m) for m in net.modules()) == 0
    assert not any("forward" in vars(m) for m in net.modules())
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert torch.equal(net(x, t), before)


def test_a_cached_call_costs_fewer_macs_than_a_full_one():
    net = unet()
    x, t = torch.randn(1, 1, 16, 16), torch.full((1,), 10.0)

    def macs() -> int:
        with FlopCounterMode(display=False) as counter:
            net(x, t)
        return counter.get_total_flops() // 2

    full_cost = macs()
    costs = []
    skips = len(net.down) + 1
    for branch in range(1, skips + 1):
        with DeepCache(net, CacheConfig(interval=2, branch=branch)):
            assert macs() == full_cost  # call 0 is full
            costs.append(macs())  # call 1 is cached
    assert all(c < full_cost for c in costs)
    assert costs == sorted(costs)  # a deeper branch keeps more of the network
    assert costs[0] < 0.5 * full_cost


def test_branch_bounds_and_non_unets():
    net = unet()
    skips = len(net.down) + 1
    deep, feature = branch_modules(net, skips)
    assert feature is net.mid and deep == [net.mid]  # the deepest branch caches the middle
    deep, feature = branch_modules(net, 1)
    assert feature is net.up[-2] and deep[0] is net.down[0]
    with pytest.raises(ValueError, match="at least 1"):
        CacheConfig(interval=2, branch=0)
    with pytest.raises(ValueError, match=f"between 1 and {skips}"):
        DeepCache(net, CacheConfig(interval=2, branch=skips + 1))
    with pytest.raises(ValueError, match="needs a UNet"):
        DeepCache(nn.Linear(2, 2), CacheConfig(interval=2))


def test_uniform_and_quadratic_schedules():
    is_full = full_calls(CacheConfig(interval=3), None)
    assert [i for i in range(10) if is_full(i)] == [0, 3, 6, 9]
    with pytest.raises(ValueError, match="fixed number"):
        full_calls(CacheConfig(interval=3, schedule="quadratic"), None)
    for total, k in ((100, 20), (100, 10), (50, 25), (10, 10), (7, 1)):
        for center in (0.0, 0.3, 0.5, 1.0):
            s = quadratic_schedule(total, k, center)
            assert len(s) == k and s[0] == 0 and s[-1] < total
            assert all(b > a for a, b in itertools.pairwise(s))
    gaps = torch.diff(torch.tensor(quadratic_schedule(100, 10, 0.0))).tolist()
    assert gaps == sorted(gaps) and gaps[-1] > 3 * gaps[0]  # denser early
    s = quadratic_schedule(100, 12, 0.5)
    gaps = torch.diff(torch.tensor(s)).tolist()
    middle = min(range(len(gaps)), key=lambda i: gaps[i])
    assert 35 <= s[middle] <= 60 and gaps[0] > gaps[middle] < gaps[-1]  # denser mid-way
    is_full = full_calls(CacheConfig(interval=5, schedule="quadratic", center=0.5), 100)
    assert sum(is_full(i) for i in range(100)) == 20


def test_linear_features_extrapolate_the_last_two_full_calls():
    """features="linear": on cached calls the cached feature follows the straight line
    through the features of the last two full calls (reuse before there are two)."""
    net = unet()
    x, t = torch.randn(2, 1, 16, 16), torch.full((2,), 300.0)
    seen: list[torch.Tensor] = []
    dc = DeepCache(net, CacheConfig(interval=2, branch=2, features="linear"))
    with dc:
        handle = dc.feature.register_forward_hook(lambda m, a, o: seen.append(o.clone()))
        for i in range(6):
            net(x + 0.1 * i, t)
        handle.remove()
    f0, f1, f2, f3, f4, f5 = seen
    assert torch.equal(f1, f0)  # one full call recorded: plain reuse
    assert torch.allclose(f3, f2 + (f2 - f0) * 0.5, atol=1e-6)
    assert torch.allclose(f5, f4 + (f4 - f2) * 0.5, atol=1e-6)


def test_a_new_batch_size_forces_a_full_call():
    net = unet()
    t2, t3 = torch.full((2,), 5.0), torch.full((3,), 5.0)
    dc = DeepCache(net, CacheConfig(interval=10))
    with dc:
        net(torch.randn(2, 1, 16, 16), t2)
        out = net(x3 := torch.randn(3, 1, 16, 16), t3)
        assert dc.full == 2
    assert torch.equal(out, net(x3, t3))


def test_planned_evaluations_match_the_samplers():
    ddpm, flow = pipeline(), pipeline(FlowRunConfig)
    for pipe in (ddpm, flow):
        for sampler in pipe.SAMPLERS:
            if sampler == "dopri5":
                assert pipe.planned_nfe(sampler, 5) is None
                continue
            for steps in (1, 4):
                stats: dict = {}
                sample(pipe, 2, sampler=sampler, steps=steps, stats=stats)
                assert stats["nfe"] == pipe.planned_nfe(sampler, steps), (sampler, steps)


def test_quadratic_and_linear_caching_through_pipelines_and_a_latent_unet():
    ddpm = pipeline(**{"model.num_classes": 3})
    labels = torch.tensor([0, 1, 2])
    ref = sample(ddpm, 3, sampler="ddim", steps=10, labels=labels, guidance=2.0)
    for cache in (CacheConfig(3, 2), CacheConfig(3, 2, "quadratic", 0.5),
                  CacheConfig(3, 2, features="linear")):  # fmt: skip
        stats: dict = {}
        out = sample(ddpm, 3, sampler="ddim", steps=10, labels=labels, guidance=2.0,
                          cache=cache, stats=stats)  # fmt: skip
        assert stats["full_nfe"] == 4 and stats["nfe"] == 10
        assert 0 < (out - ref).pow(2).mean() < ref.pow(2).mean()
    with pytest.raises(ValueError, match="fixed number"):
        sample(ddpm, 2, sampler="dopri5", cache=CacheConfig(2, schedule="quadratic"))
    latent = unet(in_channels=4)  # a latent UNet is the same class on (4, h, w) inputs
    x = torch.randn(2, 4, 16, 16)
    full, cached = calls_of(latent, DeepCache(latent, CacheConfig(2, 1)), 2, x)
    assert full.shape == (2, 4, 16, 16)
    assert torch.allclose(cached, full, atol=1e-6)  # same input: the cache is exact
