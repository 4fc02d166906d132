"""Single-step denoisers: Tweedie's formula on exact Gaussian models, the oracle's limits,
sigma <-> timestep, Noise2Noise's minimiser, and `train denoiser` / `denoise-bench` end to
end with bad noise levels exiting 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from diffkit.eval.denoise import blur_denoiser, oracle_denoiser
from diffkit.methods.ddpm import DDPMPipeline, ddpm_timestep
from diffkit.methods.denoiser import tweedie
from diffkit.methods.flow import FlowPipeline
from diffkit.models.contract import DDPMModel, FlowModel
from diffkit.objectives.denoise import DenoiseObjective, image_sigma, sigma_to_net_time
from diffkit.schedules import make_schedule
from tests.cli.util import invoke, last_line

MU, S = 0.3, 0.4  # Gaussian data N(MU, S^2 I) in diffkit's units
SHAPE = (1, 4, 4)


def gaussian_posterior(y: torch.Tensor, s_noise: float) -> torch.Tensor:
    return MU + S**2 / (S**2 + s_noise**2) * (y - MU)


def test_tweedie_on_the_exact_gaussian_ddpm_is_the_posterior_mean():
    sched = make_schedule("linear", 1000)

    def eps_net(x, t, cond):  # E[eps | x_t] of Gaussian data
        ab = sched.alpha_bar(t, x.ndim).double()
        x0 = MU + ab.sqrt() * S**2 / (ab * S**2 + 1 - ab) * (x.double() - ab.sqrt() * MU)
        return ((x.double() - ab.sqrt() * x0) / (1 - ab).sqrt()).float()

    model = DDPMModel(net=torch.nn.Identity(), sample_shape=SHAPE, schedule=sched, clip=False)
    model.raw = lambda x, t, cond=None: eps_net(x, t, cond)  # type: ignore[method-assign]
    d = tweedie(DDPMPipeline(model, torch.device("cpu")))
    assert (d.name, d.kind) == ("ddpm", "tweedie-ddpm")
    y = torch.randn(3, *SHAPE)
    ab = sched.alphas_cumprod.double()
    for t in (0, 10, 250, 999):  # noise levels on the grid: exact
        s_t = float(((1 - ab[t]) / ab[t]).sqrt())
        assert ddpm_timestep(sched, s_t / 2) == t  # sigma <-> timestep round trip
        torch.testing.assert_close(d(y, s_t / 2), gaussian_posterior(y, s_t), atol=2e-5, rtol=0)
    # between grid points: the nearest level, within half a grid step
    torch.testing.assert_close(d(y, 0.5), gaussian_posterior(y, 1.0), atol=2e-3, rtol=0)
    assert torch.equal(d(y, 0.0), y)


@pytest.mark.parametrize("sigma", [0.05, 0.2, 0.5, 1.0, 3.0])
def test_tweedie_on_the_exact_gaussian_flow_is_the_posterior_mean(sigma: float):
    def velocity(x, tt, cond):  # E[x1 - x0 | x_t] of Gaussian data, t = tt / 1000
        t = (tt / 1000).reshape(-1, 1, 1, 1).double()
        x1 = MU + t * S**2 / (t**2 * S**2 + (1 - t) ** 2) * (x.double() - t * MU)
        return ((x1 - x.double()) / (1 - t)).float()

    model = FlowModel(net=torch.nn.Identity(), sample_shape=SHAPE)
    model.raw = lambda x, t, cond=None: velocity(x, t, cond)  # type: ignore[method-assign]
    d = tweedie(FlowPipeline(model, torch.device("cpu")))
    assert (d.name, d.kind) == ("flow", "tweedie-flow")
    y = torch.randn(3, *SHAPE)
    torch.testing.assert_close(d(y, sigma), gaussian_posterior(y, 2 * sigma), atol=1e-5, rtol=0)


def test_the_oracle_returns_training_images_at_zero_noise_and_their_mean_at_infinity():
    train = torch.rand(50, *SHAPE) * 2 - 1
    d = oracle_denoiser(train)
    assert torch.equal(d(train[:7], 0.0), train[:7])
    torch.testing.assert_close(d(train[:7] + 1e-3, 1e-3), train[:7], atol=1e-3, rtol=0)
    far = d(torch.randn(4, *SHAPE), 1e4)
    torch.testing.assert_close(far, train.mean(0).expand_as(far), atol=1e-4, rtol=0)


def test_blur_picks_no_blur_at_zero_noise_and_more_blur_for_more_noise():
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # smooth images, so blur can help
    d, widths = blur_denoiser(x)
    d(x, 0.0), d(x, 0.3), d(x, 1.0)
    assert widths[0.0] == 0.0 and 0 < widths[0.3] <= widths[1.0]


def test_sigma_units_and_the_network_time():
    assert image_sigma(0.5) == 1.0
    s = torch.tensor([0.0, 0.5, 1.0, 10.0])
    t = sigma_to_net_time(s)
    assert t[0] == 0 and bool((t.diff() > 0).all()) and t[-1] < 1000


def test_noise2noise_on_a_linear_model_matches_the_clean_target_solution():
    """Least squares of target on (y, 1) per pixel: the noisy target's solution is the
    clean one's (its noise is independent of y), up to sampling error."""
    x = (torch.rand(20_000, 1, 1, 1) < 0.3).float() * 2 - 1  # two-valued "images"
    fits = {}
    for target in ("clean", "noisy"):
        y, tgt, _ = DenoiseObjective(0.5, 0.5, target=target).corrupt(
            x, torch.Generator().manual_seed(0))  # fmt: skip
        design = torch.stack([y.flatten(), torch.ones(y.numel())], 1)
        fits[target] = torch.linalg.lstsq(design, tgt.flatten()[:, None]).solution.flatten()
    torch.testing.assert_close(fits["noisy"], fits["clean"], atol=0.03, rtol=0)
    a_clean = fits["clean"][0]  # the linear MMSE gain var(x) / (var(x) + 1)
    var = x.var()
    assert math.isclose(float(a_clean), float(var / (var + 1)), abs_tol=0.02)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


TINY = ("--limit-data", "64", "--batch-size", "16", "--max-steps", "4")  # one epoch


def test_train_and_bench_end_to_end(runs: Path, data_dir: Path, tmp_path: Path):
    common = ("--data-dir", data_dir, "--runs-dir", runs)
    fixed = last_line(invoke("train", "denoiser", "--sigma", "0.5", *TINY, *common))
    ranged = last_line(invoke("train", "denoiser", "--sigma-range", "0:1", "--sigma-input",
                              "--target", "noisy", *TINY, *common))  # fmt: skip
    cfg = json.loads((ranged / "config.json").read_text())
    assert cfg["noise"] == {"sigma_min": 0.0, "sigma_max": 1.0, "sigma_input": True,
                            "target": "noisy", "pure_noise": False}  # fmt: skip
    assert (fixed / "samples" / "epoch-0001.png").is_file()
    flow = last_line(
        invoke(
            "train",
            "rf",
            "--preset",
            "tiny",
            *TINY,
            "--sample-every",
            "0",
            "--lr-schedule",
            "exponential",
            "--lr-final",
            "0.1",
            *common,
        )
    )
    assert json.loads((flow / "config.json").read_text())["train"]["lr_schedule"] == "exponential"
    out = last_line(
        invoke(
            "denoise-bench",
            fixed,
            ranged,
            flow,
            "-n",
            "20",
            "--sigmas",
            "0,0.5,1",
            "--pure-noise",
            "--out",
            tmp_path / "b",
            *common,
        )
    )
    bench = json.loads((out / "bench.json").read_text())
    models = {p["model"] for p in bench["points"]}
    assert len(models) == 5 and len(bench["points"]) == 15  # 3 runs + blur + oracle
    assert {p["sigma"] for p in bench["points"]} == {0.0, 0.5, 1.0}
    assert len(bench["pure_noise"]["models"]) == 5
    assert (out / "psnr.png").is_file() and (out / "grid-sigma0.5.png").is_file()
    resumed = invoke("train", "denoiser", "--resume", fixed, "--max-steps", "6", "--data-dir",
                     data_dir)  # fmt: skip
    assert resumed.exit_code == 0, resumed.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("denoise-bench", "--sigmas", "-1"), "not a noise level"),
        (("denoise-bench", "--sigmas", "abc"), "comma-separated numbers"),
        (("denoise-bench", "--sigmas", ","), "at least one"),
        (("denoise-bench", "--sigmas", "0.5,nan"), "not a noise level"),
        (("denoise-bench", "--baselines", "median"), "unknown median"),
        (("denoise-bench", "--baselines", "none"), "nothing to benchmark"),
        (("train", "denoiser", "--sigma", "-1"), "not a noise level"),
        (("train", "denoiser", "--sigma", "0.5", "--sigma-range", "0:1"), "not both"),
        (("train", "denoiser", "--sigma-range", "1:0"), "is above"),
        (("train", "denoiser", "--sigma-range", "x"), "expected A:B"),
    ],
)
def test_bad_noise_levels_exit_2(args, message, data_dir: Path):
    result = invoke(*args, "--data-dir", data_dir)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_pure_noise_training_sees_no_image():
    """Denoising pure noise (CS180's exercise): the input ignores x, so the MSE minimiser is
    the mean image."""
    obj = DenoiseObjective(pure_noise=True)
    a, b = torch.zeros(8, *SHAPE), torch.ones(8, *SHAPE)
    ya, ta, _ = obj.corrupt(a, torch.Generator().manual_seed(1))
    yb, tb, _ = obj.corrupt(b, torch.Generator().manual_seed(1))
    assert torch.equal(ya, yb) and torch.equal(ta, a) and torch.equal(tb, b)
    assert abs(float(ya.mean()) + 1) < 0.5 and abs(float(ya.std()) - 2) < 0.5  # 2 z - 1
