"""`diffkit edit` at the CLI boundary on a tiny class-conditional MNIST run: every op
writes its folder, and bad input exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from diffkit.runs.samples import read_samples
from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir: Path) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke("train", "ddpm", *TINY, "--cond", "class", "--data-dir", data_dir,
                            "--runs-dir", runs))  # fmt: skip


def samples(folder: Path) -> torch.Tensor:
    assert (folder / "grid.png").is_file() and (folder / "edit.json").is_file()
    return read_samples(folder)["samples"]


def test_anagram_and_hybrid(run: Path, tmp_path: Path):
    folder = last_line(
        invoke(
            "edit",
            "anagram",
            "--model",
            run,
            "6",
            "9",
            "--views",
            "identity,rot180",
            "-n",
            "2",
            "--steps",
            "3",
            "--out",
            tmp_path / "a",
        )
    )
    assert samples(folder).shape == (2, 1, 28, 28)
    assert json.loads((folder / "edit.json").read_text())["views"] == ["identity", "rot180"]
    folder = last_line(
        invoke(
            "edit",
            "hybrid",
            "--model",
            run,
            "1",
            "8",
            "--sigma",
            "1.5",
            "--kernel",
            "7",
            "-n",
            "2",
            "--steps",
            "3",
            "--out",
            tmp_path / "h",
        )
    )
    assert samples(folder).shape == (2, 1, 28, 28)


def test_factorize_into_three_bands(run: Path, tmp_path: Path):
    folder = last_line(invoke("edit", "factorize", "--model", run, "1", "8", "0", "--sigmas",
                              "3,1", "--kernel", "9", "-n", "2", "--steps", "3",
                              "--out", tmp_path / "f"))  # fmt: skip
    assert samples(folder).shape == (2, 1, 28, 28)
    assert json.loads((folder / "edit.json").read_text())["prompts"] == ["1", "8", "0"]


def test_sdedit_and_inpaint_keep_what_they_should(run: Path, data_dir: Path, tmp_path: Path):
    common = ("--image", "mnist:test:0", "--steps", "4", "--data-dir", data_dir)
    folder = last_line(
        invoke(
            "edit",
            "sdedit",
            "--model",
            run,
            *common,
            "--start",
            "0,3",
            "--prompt",
            "7",
            "--out",
            tmp_path / "s",
        )
    )
    assert samples(folder).shape == (2, 1, 28, 28)
    from diffkit.edit.images import load_image

    original = load_image("mnist:test:0", (1, 28, 28), data_dir)
    for extra, name in ((), "i"), (("--resample", "2,2"), "r"):
        folder = last_line(
            invoke(
                "edit",
                "inpaint",
                "--model",
                run,
                *common,
                "--box",
                "0,0,28,14",
                "-n",
                "2",
                *extra,
                "--out",
                tmp_path / name,
            )
        )
        out = samples(folder)
        assert out.shape == (2, 1, 28, 28)
        assert torch.equal(out[..., 14:, :], original.expand(2, -1, -1, -1)[..., 14:, :])


def test_bad_edit_input_is_one_line(run: Path, data_dir: Path, tmp_path: Path):
    Image.new("L", (10, 10)).save(tmp_path / "small.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    image = ("--image", "mnist:test:0", "--data-dir", data_dir, "--steps", "4")
    cases = [
        (("anagram", "--model", run, "6", "9", "--views", "identity,blur"), "pixel permutation"),
        (("anagram", "--model", run, "6", "9", "--views", "flip"), "1 views for 2 prompts"),
        (("anagram", "--model", run, "6", "giraffe"), "is not a class"),
        (
            ("sdedit", "--model", run, "--image", tmp_path / "junk.png"),
            "cannot read it as an image",
        ),
        (("sdedit", "--model", run, *image, "--start", "9"), "start must be between 0 and 3"),
        (("inpaint", "--model", run, *image, "--mask", tmp_path / "small.png"), "is 10x10"),
        (("inpaint", "--model", run, *image), "exactly one of --mask and --box"),
        (("inpaint", "--model", run, *image, "--box", "0,0,40,3"), "--box 0,0,40,3"),
        (("hybrid", "--model", run, "1", "8", "--guidance", "-1"), "--guidance"),
        (("hybrid", "--model", run, "1", "8", "--kernel", "4"), "--kernel must be odd"),
        (("sample", "--model", run, "1", "--style", "a photo of"), "--style is for text"),
        (("sample", "--model", run, "1", "--dtype", "fp16"), "--dtype and --offload"),
        (("sample", "--model", tmp_path / "nothing", "1"), "no such run"),
        (("embed", "--model", run, "1"), "not a text model"),
        (("factorize", "--model", run, "1", "8"), "3 parts for 2 prompts"),
        (("factorize", "--model", run, "1", "8", "--sigmas", "1,4"), "strictly decreasing"),
        (("factorize", "--model", run, "1", "8", "--split", "color"), "needs an RGB model"),
    ]
    for args, message in cases:
        result = invoke("edit", *args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, lines)


def test_noise_and_denoise(run: Path, data_dir: Path, tmp_path: Path):
    image = ("--image", "mnist:test:0", "--data-dir", data_dir)
    folder = last_line(invoke("edit", "noise", "--model", run, *image, "--at", "0,500,999",
                              "--out", tmp_path / "n"))  # fmt: skip
    assert samples(folder).shape == (3, 1, 28, 28)
    result = invoke("edit", "denoise", "--model", run, *image, "--start", "2", "--steps", "4",
                    "--out", tmp_path / "d")  # fmt: skip
    folder = last_line(result)
    meta = json.loads((folder / "edit.json").read_text())
    assert samples(folder).shape == (4, 1, 28, 28) and set(meta["mse"]) == {
        "blur", "one_step", "iterative"}  # fmt: skip
    assert "MSE to the original" in result.output
    bad = invoke("edit", "noise", "--model", run, *image, "--at", "1000")
    assert bad.exit_code == 2 and "timesteps 0..999" in bad.output
    # a schedule alone: the dataset item at its own size, no model
    folder = last_line(invoke("edit", "noise", *image, "--schedule", "cosine", "--out",
                              tmp_path / "c"))  # fmt: skip
    assert samples(folder).shape == (3, 1, 28, 28)
    bad = invoke("edit", "noise", "--model", run, *image, "--flow")
    assert bad.exit_code == 2 and "not two" in bad.output
