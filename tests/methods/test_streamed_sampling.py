"""Sampling streams batch by batch: the noise is drawn image by image, so images do not
depend on the batch size, and the writer never holds more than one shard."""

from __future__ import annotations

import json

import pytest
import torch

from diffkit.config import DDPMRunConfig, resolve_run_config
from diffkit.methods.ddpm import DDPMPipeline
from diffkit.methods.load import pipeline_for
from diffkit.nn.build import build_model
from diffkit.runs.samples import GRID_MAX, SampleWriter, read_samples, sample_shards


@pytest.fixture(scope="module")
def pipe() -> DDPMPipeline:
    cfg = resolve_run_config(DDPMRunConfig, {"preset": "tiny", "model.num_classes": 10})
    torch.manual_seed(0)
    return pipeline_for(cfg, build_model(cfg.model).eval(), torch.device("cpu"))


def test_same_images_at_any_batch_size(pipe):
    """Deterministic samplers; ancestral ones also draw per-step noise batch by batch."""
    labels = torch.arange(7) % 10
    kw = dict(sampler="ddim", steps=3, seed=5, labels=labels, guidance=2.0)
    whole = pipe.sample(7, batch_size=7, **kw).images
    parts = [(b.images, b.labels) for b in pipe.sample_batches(7, batch_size=3, **kw)]
    assert [p.shape[0] for p, _ in parts] == [3, 3, 1]
    assert torch.equal(torch.cat([p for p, _ in parts]), whole)
    assert torch.equal(torch.cat([y for _, y in parts]), labels)


def test_noise_matches_one_big_draw_for_mnist_shapes(pipe):
    """28 x 28 = 49 x 16 values per image: drawing image by image is the same stream as
    one (n, ...) draw, so earlier seeds give the images they gave before streaming."""
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    one = torch.randn(5, *pipe.model.sample_shape, generator=g1)
    each = torch.cat([torch.randn(1, *pipe.model.sample_shape, generator=g2) for _ in range(5)])
    assert torch.equal(one, each)


def test_result_counts_evaluations_and_time(pipe):
    batches = list(pipe.sample_batches(5, sampler="ddim", steps=4, batch_size=2))
    assert [b.nfe for b in batches] == [4, 4, 4] and all(b.seconds > 0 for b in batches)
    result = pipe.sample(5, sampler="ddim", steps=4, batch_size=2)
    assert result.nfe == 4 and result.images.shape[0] == 5 and result.labels is None
    assert result.seconds_per_image == result.seconds / 5


def test_writer_shards_caps_the_grid_and_publishes_whole(tmp_path):
    out = tmp_path / "s"
    w = SampleWriter(out, shard_size=4)
    for i in range(0, 300, 50):
        w.add(torch.full((50, 1, 4, 4), i / 300), torch.arange(i, i + 50))
    assert not out.exists()  # nothing at the destination until publish
    assert len(list(w.tmp.glob("samples-*.safetensors"))) == 75  # written as they fill
    w.publish({"n": 300})
    assert len(sample_shards(out)) == 75
    got = read_samples(out)
    assert got["samples"].shape == (300, 1, 4, 4) and got["labels"].tolist() == list(range(300))
    assert json.loads((out / "sample.json").read_text())["files"][0] == "samples-00000.safetensors"
    assert sum(g.shape[0] for g in w.grid) == GRID_MAX
    assert (out / "grid.png").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary left beside it


def test_writer_keeps_an_old_folder_until_the_new_one_is_whole(tmp_path):
    out = tmp_path / "s"
    first = SampleWriter(out)
    first.add(torch.zeros(2, 1, 4, 4), None)
    first.publish({"n": 2})
    second = SampleWriter(out, overwrite=True)
    second.add(torch.ones(3, 1, 4, 4), None)
    second.discard()  # e.g. Ctrl-C half-way
    assert read_samples(out)["samples"].shape[0] == 2
    third = SampleWriter(out, overwrite=True)
    third.add(torch.ones(3, 1, 4, 4), None)
    third.publish({"n": 3})
    assert read_samples(out)["samples"].sum() == 3 * 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_writer_refuses_a_folder_that_appeared_meanwhile(tmp_path):
    w = SampleWriter(tmp_path / "s")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "keep").write_text("x")
    w.add(torch.zeros(1, 1, 4, 4), None)
    with pytest.raises(FileExistsError):
        w.publish({})
    assert (tmp_path / "s" / "keep").read_text() == "x"


def test_sample_shows_a_bar_only_when_asked_or_in_a_terminal(pipe, capsys):
    kw = dict(sampler="ddim", steps=3, seed=5, batch_size=2)
    plain = pipe.sample(3, **kw).images  # under pytest stderr is no terminal: no bar
    assert capsys.readouterr().err == ""
    shown = pipe.sample(3, progress=True, **kw).images
    err = capsys.readouterr().err
    assert "ddim-3" in err and "/6 " in err  # 3 steps x 2 batches
    assert torch.equal(plain, shown)
    ticks = []
    pipe.sample(3, progress=True, on_step=lambda: ticks.append(1), **kw)
    assert len(ticks) == 6 and capsys.readouterr().err == ""  # the caller's own callback
