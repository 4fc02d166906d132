"""`diffkit data prepare` on a labelled RGB folder, then training on `prepared:DIR`: in
memory and memory-mapped give the same run, class names carry over, bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.cli.test_folder_cli import _pets
from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    pets = _pets(root / "pets")
    (pets / "cat" / "broken.png").write_bytes(b"not a png")
    result = invoke("data", "prepare", f"folder:{pets}", "--size", "16", "--out",
                    root / "prepared")  # fmt: skip
    assert "1 unreadable files skipped" in result.output
    return last_line(result)


def test_prepare_writes_arrays_and_a_manifest(prepared: Path):
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["shape"] == [3, 16, 16] and manifest["class_names"] == ["cat", "dog"]
    train = manifest["splits"]["train"]
    assert train["count"] == 16 and train["skipped"] == 1 and "test" not in manifest["splits"]
    assert (prepared / "train-images.u8").stat().st_size == 16 * 3 * 16 * 16
    assert (prepared / "train-labels.i64").stat().st_size == 16 * 8


def train(prepared: Path, runs: Path, *extra: str) -> Path:
    return last_line(invoke("train", "ddpm", *TINY, "--cond", "class", "--dataset",
                            f"prepared:{prepared}", "--runs-dir", runs, *extra))  # fmt: skip


def test_memory_mapped_training_equals_in_memory(prepared: Path, tmp_path: Path, monkeypatch):
    import diffkit.data.prepared as module

    in_memory = train(prepared, tmp_path / "a")
    monkeypatch.setattr(module, "available_memory", lambda: 1)  # nothing fits: map it
    seen = []
    original = module.MappedBatches.__init__

    def spy(self, *args, **kwargs):
        seen.append(True)
        original(self, *args, **kwargs)

    monkeypatch.setattr(module.MappedBatches, "__init__", spy)
    mapped = train(prepared, tmp_path / "b")
    assert seen  # the run did batch from the memory map
    a = load_file(str(in_memory / "checkpoints" / "last.safetensors"))
    b = load_file(str(mapped / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    cfg = json.loads((mapped / "config.json").read_text())
    assert cfg["data"]["class_names"] == ["cat", "dog"]
    assert (cfg["data"]["channels"], cfg["data"]["image_size"]) == (3, 16)
    out = tmp_path / "s"
    assert invoke("sample", mapped, "--class", "dog", "-n", "2", "--steps", "2", "--out",
                  out).exit_code == 0  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mnist", "--size", "64"], "fixed image size"),
        (["folder:/nonexistent"], "not found"),
        (["folder:x", "--channels", "2"], "must be 1 or 3"),
    ],
)
def test_bad_input_exits_2(args, message, tmp_path: Path):
    result = invoke("data", "prepare", *args, "--out", tmp_path / "p")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_a_prepared_folder_refuses_another_shape(prepared: Path, tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("[data]\nimage_size = 32\n")
    result = invoke("train", "ddpm", *TINY, "--dataset", f"prepared:{prepared}", "--config",
                    config, "--runs-dir", tmp_path)  # fmt: skip
    assert result.exit_code == 2 and "differs from" in result.output


def test_configs_read_no_files_and_runs_refuse_them_at_the_start(prepared: Path, tmp_path: Path,
                                                                   monkeypatch):  # fmt: skip
    """Validating a config names folders without opening them: a prepared folder given
    another shape, and folders that do not exist, all validate; the training command still
    refuses each with its one line, exit 2, before writing a run folder."""
    from diffkit.config.run import DDPMRunConfig, VAERunConfig

    cases = [
        ({"dataset": f"prepared:{prepared}", "image_size": 32}, "differs from"),
        ({"dataset": f"prepared:{tmp_path / 'gone'}"}, "is not a prepared dataset"),
        ({"dataset": f"folder:{tmp_path / 'gone'}"}, "image folder not found"),
    ]
    with monkeypatch.context() as m:
        for name in ("stat", "open", "read_text", "read_bytes", "iterdir"):
            m.setattr(Path, name, lambda *a, **k: pytest.fail("a config touched the disk"))
        for data, _ in cases:
            DDPMRunConfig.model_validate({"data": data})
            VAERunConfig.model_validate({"data": data})
    for data, message in cases:
        config = tmp_path / "c.toml"
        config.write_text("[data]\n" + "".join(f"{k} = {v!r}\n" for k, v in data.items()))
        result = invoke("train", "ddpm", *TINY, "--config", config, "--runs-dir",
                        tmp_path / "runs")  # fmt: skip
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
