"""DeepFloyd IF under diffkit: a tiny randomly initialised IF-shaped pipeline built here
(a UNet2DConditionModel with 6 output channels and IF's block types, a tiny T5 encoder, a
word-level tokenizer built in code), checked against diffusers' own IFPipeline and
IFSuperResolutionPipeline for the same noise and embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from diffkit.edit.compose import anagram, factorized  # noqa: E402
from diffkit.edit.filters import highpass, lowpass  # noqa: E402
from diffkit.edit.views import VIEWS  # noqa: E402
from diffkit.external.diffusers import (  # noqa: E402
    DiffusersTextUNet,
    DiffusersUpscaler,
    ForeignModelError,
    load_diffusers,
    upscale_condition,
)
from diffkit.models.conditioning import Cond  # noqa: E402
from diffkit.samplers.common import DynamicThreshold  # noqa: E402

CPU = torch.device("cpu")
WORDS = ["<pad>", "</s>", "<unk>", "a", "an", "photo", "of", "oil", "painting", "old", "man",
         "people", "around", "campfire", "rocket", "ship", "high", "quality"]  # fmt: skip
DIM = 16  # the tiny T5's width


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])  # fmt: skip
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_encoder():
    torch.manual_seed(0)
    cfg = transformers.T5Config(vocab_size=len(WORDS), d_model=DIM, d_kv=8, d_ff=32,
                                num_layers=1, num_heads=2, pad_token_id=0,
                                eos_token_id=1, decoder_start_token_id=0)  # fmt: skip
    return transformers.T5EncoderModel(cfg).eval()


def tiny_unet(in_channels: int = 3, size: int = 16, **extra):
    """IF's stage-I shape in miniature: text projection of the encoder states, the text
    addition embedding, simple cross-attention blocks, scale-shift resnets."""
    torch.manual_seed(1)
    return diffusers.UNet2DConditionModel(
        sample_size=size, in_channels=in_channels, out_channels=6,
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=32,
        attention_head_dim=8, encoder_hid_dim=DIM, encoder_hid_dim_type="text_proj",
        addition_embed_type="text", addition_embed_type_num_heads=2,
        resnet_time_scale_shift="scale_shift", **extra,
    ).eval()  # fmt: skip


def if_scheduler(**kw):
    """IF-I-M-v1.0's scheduler config."""
    return diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
        thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.5,
        clip_sample=True, prediction_type="epsilon", **kw,
    )  # fmt: skip


def stage_one():
    return diffusers.IFPipeline(tokenizer=tiny_tokenizer(), text_encoder=tiny_encoder(),
                                unet=tiny_unet(), scheduler=if_scheduler(), safety_checker=None,
                                feature_extractor=None, watermarker=None,
                                requires_safety_checker=False)  # fmt: skip


def stage_two():
    unet = tiny_unet(in_channels=6, size=32, class_embed_type="timestep")
    return diffusers.IFSuperResolutionPipeline(
        tokenizer=tiny_tokenizer(), text_encoder=tiny_encoder(), unet=unet,
        scheduler=if_scheduler(), image_noising_scheduler=diffusers.DDPMScheduler(
            num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
        safety_checker=None, feature_extractor=None, watermarker=None,
        requires_safety_checker=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("if")
    stage_one().save_pretrained(root / "stage1")
    stage_two().save_pretrained(root / "stage2")
    return root / "stage1", root / "stage2", root / "cache"


def embeddings(pipe, prompt: str):
    return pipe.encode_prompt(prompt, True, device=CPU, clean_caption=False)


def test_scheduler_config_becomes_the_model_conventions(saved):
    pipe = load_diffusers(saved[0], CPU, cache_dir=saved[2])
    model = pipe.model
    assert isinstance(model, DiffusersTextUNet) and model.conditioning == "text"
    assert model.variance == "learned_range" and model.spacing == "leading"
    assert model.threshold == DynamicThreshold(0.95, 1.5)
    assert model.sample_shape == (3, 16, 16)


def test_prompt_embeddings_match_the_pipeline_and_are_cached(saved, tmp_path):
    folder, _, _ = saved
    ref = diffusers.IFPipeline.from_pretrained(folder)
    pipe = load_diffusers(folder, CPU, cache_dir=tmp_path)
    enc = pipe.model.prompts
    text, empty = embeddings(ref, "An old man ")
    got = enc.embed(["An old man ", ""])
    torch.testing.assert_close(got.tokens, torch.cat([text, empty]), rtol=0, atol=0)
    assert enc.cached("an old man") and enc.cached("")  # lower-cased and stripped first
    enc.path("an old man").write_bytes(b"garbage")  # a corrupt entry is recomputed
    torch.testing.assert_close(enc.embed(["an old man"]).tokens, text, rtol=0, atol=0)


@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_ancestral_sampling_reproduces_ifpipeline(saved, guidance: float):
    """Same noise, same embeddings: diffkit's ddpm sampler with the learned-range variance
    and dynamic thresholding lands on IFPipeline's output to round-off."""
    folder, _, cache = saved
    ref = diffusers.IFPipeline.from_pretrained(folder)
    text, empty = embeddings(ref, "a photo of a man")
    want = ref(prompt_embeds=text, negative_prompt_embeds=empty, num_inference_steps=12,
               guidance_scale=guidance, generator=torch.Generator().manual_seed(0),
               output_type="pt").images  # fmt: skip
    pipe = load_diffusers(folder, CPU, cache_dir=cache)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 3, 16, 16, generator=g)  # IF's first draw, then the step noise
    cond = pipe.model.prompts.embed(["a photo of a man"])
    got, nfe = pipe.generate(noise, "ddpm", 12, cond=cond, guidance=guidance, generator=g)
    assert nfe == 12
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


def test_identity_anagram_and_single_filter_equal_plain_sampling(saved):
    folder, _, cache = saved
    pipe = load_diffusers(folder, CPU, cache_dir=cache)
    model = pipe.model
    cond = model.prompts.embed(["a rocket ship"])

    def run(net):
        g = torch.Generator().manual_seed(3)
        x = torch.randn(1, 3, 16, 16, generator=g)
        opts = pipe.options("ddpm", {})
        return pipe.integrate(net, x, "ddpm", 6, opts, g, None)[0]

    plain = run(pipe.network(cond, 7.0))
    from diffkit.edit.compose import with_guidance

    guided = with_guidance(model.raw, model.unconditional, 7.0)
    torch.testing.assert_close(run(anagram(guided, [cond], [VIEWS["identity"]])), plain)
    lo, hi = lowpass(2.0, 9), highpass(2.0, 9)
    two = factorized(guided, [cond, cond], [lo, hi])  # the same prompt in both bands
    # lowpass + highpass is the identity up to fp32 round-off, which guidance w = 7 and six
    # steps amplify: 1.15e-5 on one of 768 values on one machine (a wrong filter: ~0.1).
    torch.testing.assert_close(run(two), plain, atol=5e-5, rtol=0)


def test_negate_view_keeps_the_variance_sign(saved):
    """An anagram un-views the variance channels without the negation."""
    seen = {}

    def net(x, t, cond):
        seen["x"] = x
        return torch.cat([x, torch.full_like(x, 0.5)], dim=1)  # eps = x, v = 0.5

    out = anagram(net, [None, None], [VIEWS["identity"], VIEWS["negate"]])
    x = torch.randn(1, 3, 4, 4)
    y = out(x, torch.zeros(1, dtype=torch.long))
    torch.testing.assert_close(y[:, :3], x)  # (x + -(-x)) / 2
    torch.testing.assert_close(y[:, 3:], torch.full_like(x, 0.5))


def test_stage_two_reproduces_the_superresolution_pipeline(saved):
    _, folder, cache = saved
    ref = diffusers.IFSuperResolutionPipeline.from_pretrained(folder)
    text, empty = embeddings(ref, "a photo of a man")
    low = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    want = ref(image=low, prompt_embeds=text, negative_prompt_embeds=empty,
               num_inference_steps=6, guidance_scale=4.0, noise_level=250,
               generator=torch.Generator().manual_seed(0), output_type="pt").images  # fmt: skip
    pipe = load_diffusers(folder, CPU, cache_dir=cache)
    assert isinstance(pipe.model, DiffusersUpscaler) and pipe.model.sample_shape == (3, 32, 32)
    g = torch.Generator().manual_seed(0)  # order of draws: the start, the hint's, the steps'
    noise = torch.randn(1, 3, 32, 32, generator=g)
    cond = upscale_condition(pipe.model, low, pipe.model.prompts.embed(["a photo of a man"]),
                             torch.randn(1, 3, 32, 32, generator=g))  # fmt: skip
    got, _ = pipe.generate(noise, "ddpm", 6, cond=cond, guidance=4.0, generator=g)
    # The hint is noised by diffkit's q_sample (fp64 coefficients), diffusers' add_noise in fp32.
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_every_sampler_runs_on_stage_one(saved):
    folder, _, cache = saved
    pipe = load_diffusers(folder, CPU, cache_dir=cache)
    cond = pipe.model.prompts.embed(["a photo of a man"] * 2)
    for sampler in ("ddim", "dpm++2m", "heun"):
        out = pipe.sample(2, cond=cond, guidance=3.0, sampler=sampler, steps=4)
        assert out.images.shape == (2, 3, 16, 16) and torch.isfinite(out.images).all()
    assert pipe.options("ddpm", {"variance": "fixed_large"}).variance == "fixed_large"
    pipe.model.variance = "fixed_small"  # as if it had not learned it
    with pytest.raises(ValueError, match="did not learn"):
        pipe.options("ddpm", {"variance": "learned_range"})


def test_missing_text_encoder_weights_is_one_line(saved, tmp_path):
    import shutil

    folder = tmp_path / "if"
    shutil.copytree(saved[0], folder)
    for f in (folder / "text_encoder").glob("*.safetensors"):
        f.unlink()
    pipe = load_diffusers(folder, CPU, cache_dir=tmp_path / "cache")
    with pytest.raises(ForeignModelError, match=r"cannot load the text encoder.*edit embed"):
        pipe.model.prompts.embed(["a rocket ship"])


def test_dtypes_load(saved):
    pipe = load_diffusers(saved[0], CPU, cache_dir=saved[2], dtype="bf16")
    assert next(pipe.model.net.parameters()).dtype == torch.bfloat16
    cond = pipe.model.prompts.embed(["a rocket ship"])
    out = pipe.sample(1, cond=Cond(tokens=cond.tokens, mask=cond.mask), sampler="ddim", steps=2)
    assert out.images.dtype == torch.float32 and torch.isfinite(out.images).all()
    with pytest.raises(ForeignModelError, match="--dtype"):
        load_diffusers(saved[0], CPU, dtype="fp8")


def test_edit_cli_on_deepfloyd(saved, tmp_path, monkeypatch):
    """Every op on the tiny IF pipeline through the CLI; an identity anagram of one prompt
    is `edit sample` of that prompt; `--upscale` runs stage II; `edit embed` fills the
    cache that later edits read."""
    from diffkit.runs.samples import read_samples
    from tests.cli.util import invoke, last_line

    stage1, stage2, _ = saved
    monkeypatch.setenv("DIFFKIT_CACHE_DIR", str(tmp_path / "cache"))
    common = ("--model", stage1, "--steps", "3", "--runs-dir", tmp_path / "runs")
    result = invoke("edit", "embed", "a rocket ship", "--model", stage1)
    assert "embedded: 'a rocket ship'" in result.output and result.exit_code == 0
    assert "cached: 'a rocket ship'" in invoke("edit", "embed", "a rocket ship", "--model",
                                               stage1).output  # fmt: skip

    def out(*args) -> torch.Tensor:
        return read_samples(last_line(invoke("edit", *args, *common)))["samples"]

    plain = out("sample", "a rocket ship", "-n", "1")
    same = out("anagram", "a rocket ship", "--views", "identity", "-n", "1", "--style", "")
    torch.testing.assert_close(same, plain, rtol=0, atol=1e-6)
    assert out("anagram", "old man", "campfire", "--views", "identity,rot180", "-n", "1").shape == (
        1, 3, 16, 16)  # fmt: skip
    assert out("hybrid", "old man", "campfire", "--kernel", "5", "-n", "1").shape == (1, 3, 16, 16)
    assert out("factorize", "old man", "campfire", "--split", "color", "-n", "1").shape == (
        1, 3, 16, 16)  # fmt: skip
    img = tmp_path / "drawing.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(img)  # any size: resized and cropped
    assert out("sdedit", "--image", img, "--start", "1,2", "--prompt", "a rocket ship").shape == (
        2, 3, 16, 16)  # fmt: skip
    painted = out("inpaint", "--image", img, "--box", "0,0,16,8", "-n", "1")
    from diffkit.edit.images import load_image

    original = load_image(str(img), (3, 16, 16), tmp_path)
    assert torch.equal(painted[..., 8:, :], original[..., 8:, :])
    assert out("denoise", "--image", img, "--start", "1").shape == (4, 3, 16, 16)
    noisy = invoke("edit", "noise", "--image", img, "--at", "250,500", "--model", stage1,
                   "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert read_samples(last_line(noisy))["samples"].shape == (2, 3, 16, 16)
    up = out("sample", "a rocket ship", "-n", "1", "--upscale", "--upscaler", stage2)
    assert up.shape == (1, 3, 32, 32) and torch.isfinite(up).all()
    up = out("anagram", "old man", "campfire", "--views", "identity,flip", "-n", "1",
             "--upscale", "--upscaler", stage2)  # fmt: skip
    assert up.shape == (1, 3, 32, 32)
    bad = invoke("edit", "sample", "x", "--model", stage1, "--upscale", "--upscaler", stage1,
                 "--steps", "2", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert bad.exit_code == 2 and "not IF stage II" in bad.output


def test_offline_without_weights_is_one_line(monkeypatch, tmp_path):
    from tests.cli.util import invoke

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = invoke("edit", "sample", "a rocket ship", "--runs-dir", tmp_path / "runs")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, lines
    assert "DeepFloyd/IF-I-M-v1.0" in lines[0] and "hf download" in lines[0]
