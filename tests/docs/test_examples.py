"""Every file in examples/ runs as written.

The scripts run end to end on the first MNIST images, with the smoke command their own
docstring documents (a tiny network, a couple of steps, few samples), and leave what they
say they leave. The ImageNet-100 recipe files resolve through ``--print-config`` on a
128 px labelled folder, and what each asks for beyond its config (the LPIPS backbone file,
the feature classifier of in-training evaluation) is named where a user reads the recipe.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from tests.cli.util import invoke, last_line

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs the imports; main() is behind __name__ == "__main__"
    return module


def smoke_args(module: ModuleType, path: Path) -> list[str]:
    """The arguments of the smoke run the script's docstring documents (after the line
    that starts "A smoke run"): one shell command, with backslash continuations."""
    doc = module.__doc__.split("A smoke run", 1)[1].split("\n", 1)[1]
    command = re.sub(r"\\\n", " ", doc.strip())
    words = shlex.split(command)
    assert words[:2] == ["python", f"examples/{path.name}"], words
    return words[2:]


def run_example(name: str, data_dir: Path, tmp_path: Path, capsys) -> tuple[list[str], Path]:
    """Run examples/``name`` with its documented smoke arguments into ``tmp_path/runs``;
    its printed lines and the runs folder."""
    path = EXAMPLES / name
    module = load(path)
    runs = tmp_path / "runs"
    module.main([*smoke_args(module, path), "--data-dir", str(data_dir), "--runs-dir", str(runs)])
    return capsys.readouterr().out.splitlines(), runs


def image(path: Path) -> Image.Image:
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as im:
        im.load()
        return im


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_example_imports_and_documents_its_smoke_run(path: Path):
    module = load(path)
    assert callable(module.main)
    args = smoke_args(module, path)
    assert "--max-steps" in args and "--limit-data" in args


def test_ddpm_vs_ddim_runs(data_dir: Path, tmp_path: Path, capsys):
    out, runs = run_example("ddpm_vs_ddim.py", data_dir, tmp_path, capsys)
    run = Path(out[0].removeprefix("run folder: "))
    assert run.parent == runs / "ddpm" and (run / "checkpoints" / "last.safetensors").is_file()
    assert re.fullmatch(r"trained 2 steps in \d+ s \(\d+ img/s\)", out[1]), out
    assert re.fullmatch(r"DDPM with 2 steps: 4 images in \d+ ms", out[2]), out
    assert re.fullmatch(r"DDIM with 2 steps: 4 images in \d+ ms", out[3]), out
    for sampler in ("ddpm", "ddim"):
        width, height = image(run / f"ddpm-vs-ddim-{sampler}-2.png").size
        assert width > 3 * height  # one row of four


def test_latent_diffusion_guidance_runs(data_dir: Path, tmp_path: Path, capsys):
    out, runs = run_example("latent_diffusion_guidance.py", data_dir, tmp_path, capsys)
    vae = Path(out[0].rsplit(", ", 1)[1])
    assert out[0].startswith("VAE: recon MSE ") and (vae / "vae.safetensors").is_file()
    assert vae.parent == runs / "vae"
    ldm = Path(out[1].rsplit(", ", 1)[1])
    assert out[1].startswith("latent DDPM: 2 steps, ") and ldm.parent == runs / "ldm"
    assert re.fullmatch(r"latent DDPM 2 steps: 4 images in \d+ ms", out[2]), out
    assert re.fullmatch(r"latent DDIM 2 steps: 4 images in \d+ ms", out[3]), out
    assert out[4] == f"class grid (DDIM 2, w = 3.0): {ldm / 'cfg-grid.png'}"
    for name in ("latent-ddpm-2.png", "latent-ddim-2.png"):
        image(ldm / name)
    width, height = image(ldm / "cfg-grid.png").size
    assert height > 5 * width  # one digit per row, one image per digit


def test_rectified_flow_reflow_runs(data_dir: Path, tmp_path: Path, capsys):
    out, runs = run_example("rectified_flow_reflow.py", data_dir, tmp_path, capsys)
    rf1, rf2 = Path(out[0].removeprefix("1-RF: ")), Path(out[2].removeprefix("2-RF: "))
    assert rf1.parent == runs / "rf" and rf2.parent == runs / "reflow"
    assert out[1].startswith("pairs: 8 in ")
    assert (Path(out[1].split(" in ", 1)[1]) / "pairs.json").is_file()
    for name, run, lines in (("1-RF", rf1, out[3:5]), ("2-RF", rf2, out[5:7])):
        assert re.fullmatch(rf"{name}: S = -?\d+\.\d{{4}}", lines[0]), out
        assert lines[1] == f"{name}: rows = 1, 2 Euler steps -> {run / 'euler-steps.png'}"
        width, height = image(run / "euler-steps.png").size
        assert 0.8 < height / width < 1.25  # two rows (step counts) of two images


# --- the ImageNet-100 recipe files -------------------------------------------------------

VAE_TOML = EXAMPLES / "imagenet100-vae.toml"
LDM_TOML = EXAMPLES / "imagenet100-ldm.toml"


@pytest.fixture(scope="module")
def in100_like(tmp_path_factory) -> Path:
    """A prepared 128 px labelled RGB folder, three classes (the recipe's data, in shape)."""
    root = tmp_path_factory.mktemp("in100")
    for k, name in enumerate(("n01440764", "n01443537", "n01484850")):
        (root / "train" / name).mkdir(parents=True)
        for i in range(4):
            colour = (60 * k + 10 * i, 200 - 50 * k, 30 + 20 * i)
            Image.new("RGB", (160, 128), colour).save(root / "train" / name / f"{i}.png")
    result = invoke("data", "prepare", f"folder:{root / 'train'}", "--size", "128", "--out",
                    root / "prepared")  # fmt: skip
    return last_line(result)


def printed_config(result) -> dict:
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


def test_imagenet100_vae_config_resolves(in100_like: Path, tmp_path: Path):
    cfg = printed_config(invoke("train", "vae", "--config", VAE_TOML, "--dataset",
                                f"prepared:{in100_like}", "--print-config"))  # fmt: skip
    from diffkit.config.run import VAE_NETS

    assert {k: cfg["model"][k] for k in VAE_NETS["kl-f4"]} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in VAE_NETS["kl-f4"].items()
    }  # the file is --net kl-f4, as it says
    assert (cfg["data"]["image_size"], cfg["data"]["channels"]) == (128, 3)
    assert (cfg["recon_loss"], cfg["kl_weight"], cfg["lpips_weight"]) == ("mse", 0.008, 1.0)
    # its LPIPS term needs the AlexNet backbone file the recipe names, and says so up front
    assert "--lpips-weights alexnet-owt-7be5be79.pth" in VAE_TOML.read_text()
    absent, runs = tmp_path / "absent.pth", tmp_path / "runs"
    result = invoke("train", "vae", "--config", VAE_TOML, "--dataset", f"prepared:{in100_like}",
                    "--lpips-weights", absent, "--runs-dir", runs)  # fmt: skip
    assert result.exit_code == 2 and "absent.pth" in result.output, result.output
    assert not runs.exists()


@pytest.fixture(scope="module")
def in100_vae(in100_like: Path, tmp_path_factory) -> Path:
    """A VAE with the recipe's downsampling and latent (3x32x32 at 128 px) at 1/16 of its
    width, trained one step: the LDM recipe takes only its latent shape and dataset."""
    root = tmp_path_factory.mktemp("in100-vae")
    narrow = root / "narrow.toml"
    recipe = VAE_TOML.read_text()
    narrow.write_text(
        recipe.replace("lpips_weight = 1.0", "lpips_weight = 0.0")
        .replace("base_channels = 128", "base_channels = 8")
        .replace("norm_groups = 32", "norm_groups = 4")
    )
    result = invoke("train", "vae", "--config", narrow, "--dataset", f"prepared:{in100_like}",
                    "--max-steps", "1", "--batch-size", "4", "--sample-every", "0",
                    "--runs-dir", root / "runs")  # fmt: skip
    return last_line(result)


def test_imagenet100_ldm_config_resolves(in100_vae: Path):
    cfg = printed_config(invoke("train", "ldm", "--vae", in100_vae, "--cond", "class",
                                "--config", LDM_TOML, "--print-config"))  # fmt: skip
    model, train = cfg["model"], cfg["train"]
    assert (model["in_channels"], model["image_size"], model["num_classes"]) == (3, 32, 3)
    assert (model["base_channels"], model["mid_block"], model["transformer_depth"]) == (
        192, "transformer", 4)  # fmt: skip
    assert (train["epochs"], train["batch_size"], train["cond_drop"]) == (300, 64, 0.1)
    from diffkit.config.resolve import validate
    from diffkit.config.run import DDPMRunConfig
    from diffkit.nn.build import estimate_parameters

    # the printed config reads back, and its network builds (shapes only, no memory)
    assert estimate_parameters(validate(DDPMRunConfig, cfg).model) > 50_000_000


def test_imagenet100_ldm_names_what_evaluation_needs():
    """In-training evaluation scores with a qualified feature classifier of the dataset,
    loaded before step 0; the recipe trains none, so it evaluates after training and names
    the classifier step that in-training evaluation would need."""
    text = LDM_TOML.read_text()
    assert "eval_every" not in tomllib.loads(text)["train"]
    assert "diffkit train classifier --dataset prepared:data/in100-128" in text
    assert "diffkit eval runs/ldm/<run>" in text
