"""Reflow: straightening on a 2-D toy, and pair sets that survive interruption."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from diffkit.config.model import MLPConfig
from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import FlowRunConfig, PairsConfig
from diffkit.methods.flow import FlowPipeline
from diffkit.methods.load import pipeline_for
from diffkit.methods.reflow import PairsError, load_pairs, make_pairs, reflow_config
from diffkit.nn import build_model
from diffkit.nn.mlp import MLPDenoiser
from diffkit.objectives.flow import FlowObjective
from diffkit.samplers.common import make_velocity
from diffkit.samplers.ode import euler_straightness
from diffkit.schedules.flow import flow_time_grid


def toy_data(n: int, g: torch.Generator) -> torch.Tensor:
    """Four tight clusters at (+-2, +-2): independent noise-data pairs cross a lot."""
    centres = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]])
    idx = torch.randint(0, 4, (n,), generator=g)
    return centres[idx] + 0.1 * torch.randn(n, 2, generator=g)


def fit(net, objective, batches, steps: int, lr: float = 3e-3, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for i in range(steps):
        loss = objective(net, batches(i, g), None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()


def straightness_of(net, noise: torch.Tensor) -> tuple[torch.Tensor, float]:
    x1, s = euler_straightness(make_velocity(net.eval()), noise, flow_time_grid(100))
    net.train()
    return x1, float(s.mean())


def test_reflow_straightens_a_2d_flow():
    torch.manual_seed(0)
    cfg = MLPConfig(dim=2, hidden=64, depth=2, emb_dim=32)
    rf1 = MLPDenoiser(cfg)
    fit(rf1, FlowObjective(), lambda i, g: toy_data(256, g), steps=1500)
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(2048, 2, generator=gen)
    x1, s1 = straightness_of(rf1, noise)
    # 1-RF lands on the clusters: most samples within 0.5 of a centre.
    near = (x1.abs() - 2).abs().max(dim=1).values < 0.5
    assert near.float().mean() > 0.8
    # 2-RF: initialised from 1-RF, trained on its (noise, sample) pairs.
    pairs = torch.stack([noise, x1], dim=1)
    rf2 = MLPDenoiser(cfg)
    rf2.load_state_dict(rf1.state_dict())

    def pair_batches(i, g):
        return pairs[torch.randint(0, len(pairs), (256,), generator=g)]

    fit(rf2, FlowObjective(paired=True), pair_batches, steps=800, lr=1e-3)
    probe = torch.randn(1024, 2, generator=torch.Generator().manual_seed(2))
    _, s1_probe = straightness_of(rf1, probe)
    x2, s2 = straightness_of(rf2, probe)
    assert s1 > 0.05 and s2 < 0.5 * s1_probe, (s1, s1_probe, s2)
    # One Euler step of the 2-RF already lands far closer to its 100-step result than the
    # 1-RF's one step does to its own.
    one1 = probe + make_velocity(rf1.eval())(probe, torch.zeros(1024))
    one2 = probe + make_velocity(rf2.eval())(probe, torch.zeros(1024))
    x1_probe, _ = straightness_of(rf1, probe)
    assert (one2 - x2).pow(2).mean() < 0.5 * (one1 - x1_probe).pow(2).mean()


@pytest.fixture
def tiny_flow() -> FlowPipeline:
    torch.manual_seed(0)
    cfg = resolve_run_config(FlowRunConfig, {"preset": "tiny", "model.num_classes": 3})
    return pipeline_for(cfg, build_model(cfg.model).eval(), torch.device("cpu"))


def pairs_cfg(**kw) -> PairsConfig:
    base = {"source": "x", "source_sha256": "0" * 64, "n": 10, "steps": 2, "shard_size": 4,
            "batch_size": 3}  # fmt: skip
    return PairsConfig(**(base | kw))


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.safetensors"))}


def test_make_pairs_writes_labelled_shards_and_loads_back(tiny_flow, tmp_path: Path):
    manifest = make_pairs(pairs_cfg(), tiny_flow, tmp_path / "p")
    assert manifest["complete"] and len(manifest["shards"]) == 3
    assert [e["count"] for e in manifest["shards"].values()] == [4, 4, 2]
    pairs = load_pairs(tmp_path / "p")
    assert pairs.data.images.shape == (10, 2, 1, 28, 28)
    assert pairs.data.labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert manifest["straightness"] >= 0
    cfg = reflow_config(pairs, overrides={"train.epochs": 2})
    assert cfg.reflow.generation == 2 and cfg.train.epochs == 2 and cfg.name == "2rf"
    assert cfg.reflow.pairs_digest == pairs.digest
    distill = reflow_config(pairs, distill_steps=1)
    assert distill.reflow.generation == 1 and distill.train.preview_steps == 1


def test_interrupted_pairs_resume_without_duplicates_or_losses(tiny_flow, tmp_path: Path):
    whole = tmp_path / "whole"
    make_pairs(pairs_cfg(), tiny_flow, whole)
    cut = tmp_path / "cut"

    def stop_after_first(progress):
        if progress.shard == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_pairs(pairs_cfg(), tiny_flow, cut, on_shard=stop_after_first)
    kept = shard_bytes(cut)
    assert list(kept) == ["shard-00000.safetensors"]
    assert not json.loads((cut / "pairs.json").read_text())["complete"]
    with pytest.raises(PairsError, match="incomplete"):
        load_pairs(cut)
    # A torn shard (the crash hit mid-write of a file the manifest never listed) is remade.
    (cut / "shard-00001.safetensors").write_bytes(b"garbage")
    skipped = []
    make_pairs(
        pairs_cfg(), tiny_flow, cut, resume=True, on_shard=lambda p: skipped.append(p.skipped)
    )
    assert skipped == [True, False, False]
    assert shard_bytes(cut) == shard_bytes(whole)  # same noise, same pairs, nothing twice
    assert load_pairs(cut).digest == load_pairs(whole).digest


def test_resume_refuses_other_settings_and_tampered_shards(tiny_flow, tmp_path: Path):
    folder = tmp_path / "p"
    make_pairs(pairs_cfg(), tiny_flow, folder)
    with pytest.raises(PairsError, match="different settings"):
        make_pairs(pairs_cfg(steps=3), tiny_flow, folder, resume=True)
    data = bytearray((folder / "shard-00001.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "shard-00001.safetensors").write_bytes(bytes(data))
    with pytest.raises(PairsError, match="sha256"):
        load_pairs(folder)


def test_malformed_manifests_are_one_line_errors_or_remade(tiny_flow, tmp_path: Path):
    folder = tmp_path / "p"
    make_pairs(pairs_cfg(), tiny_flow, folder)
    whole = shard_bytes(folder)
    manifest = json.loads((folder / "pairs.json").read_text())
    manifest["shards"]["shard-00001.safetensors"]["sha256"] = 5
    manifest["shards"]["../elsewhere"] = {"sha256": "0" * 64, "count": 1}
    (folder / "pairs.json").write_text(json.dumps(manifest))
    with pytest.raises(PairsError, match="malformed"):
        load_pairs(folder)
    skipped = []
    make_pairs(pairs_cfg(), tiny_flow, folder, resume=True,
               on_shard=lambda p: skipped.append(p.skipped))  # fmt: skip
    assert skipped == [True, False, True] and shard_bytes(folder) == whole
    assert "../elsewhere" not in json.loads((folder / "pairs.json").read_text())["shards"]
    assert load_pairs(folder).data.images.shape[0] == 10
    (folder / "config.json").write_text("{not json")
    with pytest.raises(PairsError, match=r"cannot read config\.json"):
        make_pairs(pairs_cfg(), tiny_flow, folder, resume=True)
    with pytest.raises(PairsError, match="no such folder"):
        make_pairs(pairs_cfg(), tiny_flow, tmp_path / "missing", resume=True)


def test_make_pairs_reports_every_solved_batch(tiny_flow, tmp_path: Path):
    counts = []
    make_pairs(pairs_cfg(), tiny_flow, tmp_path / "p", on_batch=counts.append)
    # shards of 4, 4 and 2 pairs, solved in batches of at most 3
    assert counts == [3, 1, 3, 1, 2] and sum(counts) == 10


def test_make_pairs_default_bar_counts_pairs_including_kept_shards(
    tiny_flow, tmp_path: Path, monkeypatch
):
    import diffkit.progress as progress

    seen = []

    @contextlib.contextmanager
    def recording_bar(label, total, enabled=True, unit="step"):
        done = []
        yield done.append if enabled else None
        seen.append((label, total, unit, sum(done)))

    monkeypatch.setattr(progress, "step_bar", recording_bar)
    folder = tmp_path / "p"

    def stop_after_first(p):
        if p.shard == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_pairs(pairs_cfg(), tiny_flow, folder, on_shard=stop_after_first, progress=True)
    make_pairs(pairs_cfg(), tiny_flow, folder, resume=True, progress=True)
    assert seen[-1] == ("pairs", 10, "pair", 10)  # the kept shard's 4 pairs count as done
    make_pairs(pairs_cfg(), tiny_flow, tmp_path / "quiet", progress=False)
    assert seen[-1][3] == 0  # disabled: no bar ticks
