import json
from pathlib import Path

import pytest

from diffkit.config import PRESETS, ConfigError, DDPMRunConfig, resolve_run_config
from diffkit.config.resolve import env_layer


def test_defaults_come_from_the_preset():
    cfg = resolve_run_config(DDPMRunConfig, {}, environ={})
    assert cfg.preset == "default"  # the DDPM paper's MNIST UNet: base 64, 64-128-256
    assert (cfg.model.base_channels, cfg.model.channel_mults) == (64, (1, 2, 4))
    assert cfg.model.attention_levels == (1,) and cfg.model.mid_attention
    small = resolve_run_config(DDPMRunConfig, {"preset": "small"}, environ={})
    assert small.model.base_channels == PRESETS["small"]["model"]["base_channels"]
    assert small.model.patch_size == 2
    tiny = resolve_run_config(DDPMRunConfig, {"preset": "tiny"}, environ={})
    assert tiny.train.batch_size == PRESETS["tiny"]["train"]["batch_size"]


def test_small_and_small_v1_differ_only_in_the_ddpm_objective():
    """`small` is x0-prediction with Min-SNR-5; `small-v1` keeps the recipe its
    older benchmark numbers came from; a flow takes the shared sections only."""
    from diffkit.config.run import FlowRunConfig

    new = resolve_run_config(DDPMRunConfig, {"preset": "small"}, environ={})
    old = resolve_run_config(DDPMRunConfig, {"preset": "small-v1"}, environ={})
    assert (new.diffusion.prediction, new.diffusion.min_snr_gamma) == ("x0", 5.0)
    assert (old.diffusion.prediction, old.diffusion.min_snr_gamma) == ("eps", None)
    assert (new.model, new.train) == (old.model, old.train)
    flow = resolve_run_config(FlowRunConfig, {"preset": "small"}, environ={})
    assert flow.model == new.model and not hasattr(flow, "diffusion")


def test_precedence_flags_over_file_over_env_over_preset(tmp_path: Path):
    file = tmp_path / "run.toml"
    file.write_text('name = "from-file"\n[train]\nlr = 0.003\nepochs = 7\nbatch_size = 16\n')
    env = {
        "DIFFKIT_TRAIN__LR": "0.004",
        "DIFFKIT_TRAIN__EPOCHS": "9",
        "DIFFKIT_TRAIN__SEED": "42",
        "DIFFKIT_RUNS_DIR": "/elsewhere",
    }
    cfg = resolve_run_config(DDPMRunConfig, {"train.epochs": 3, "train.lr": None}, file, env)
    assert cfg.train.epochs == 3  # flag beats file and env
    assert cfg.train.lr == 0.003  # file beats env
    assert cfg.train.seed == 42  # env beats default
    assert cfg.train.batch_size == 16
    assert cfg.name == "from-file"


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_config_file_formats(tmp_path: Path, suffix):
    data = {"train": {"epochs": 2}, "diffusion": {"schedule": "cosine"}}
    text = {
        ".toml": "[train]\nepochs = 2\n[diffusion]\nschedule = 'cosine'\n",
        ".yaml": "train:\n  epochs: 2\ndiffusion:\n  schedule: cosine\n",
        ".json": json.dumps(data),
    }[suffix]
    (tmp_path / f"c{suffix}").write_text(text)
    cfg = resolve_run_config(DDPMRunConfig, {}, tmp_path / f"c{suffix}", {})
    assert cfg.train.epochs == 2 and cfg.diffusion.schedule == "cosine"


def test_dataset_sets_model_shape():
    cfg = resolve_run_config(DDPMRunConfig, {"data.dataset": "cifar10"}, environ={})
    assert (cfg.model.in_channels, cfg.model.image_size) == (3, 32)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"train.epochs": -1}, "invalid train.epochs: Input should be greater than or equal to 1"),
        ({"data.dataset": "imagenet"}, "invalid data.dataset: unknown dataset 'imagenet'"),
        ({"preset": "huge"}, "invalid preset"),
        ({"train.lr": "fast"}, "invalid train.lr"),
        ({"model.in_channels": 3}, "invalid model.in_channels: 3 does not match dataset 'mnist'"),
        ({"model.base_channels": 33}, "invalid model: base_channels must be even"),
        ({"train.preview_steps": 5000}, "invalid config: train.preview_steps=5000"),
        ({"train.seed": -1}, "invalid train.seed"),
        ({"preset": ["tiny"]}, "invalid preset"),
    ],
)
def test_invalid_values_give_one_line(flags, message):
    with pytest.raises(ConfigError) as info:
        resolve_run_config(DDPMRunConfig, flags, environ={})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unknown_keys_and_bad_files(tmp_path: Path):
    (tmp_path / "x.json").write_text('{"train": {"epoch": 3}}')
    with pytest.raises(ConfigError, match=r"train\.epoch: Extra inputs are not permitted"):
        resolve_run_config(DDPMRunConfig, {}, tmp_path / "x.json", {})
    (tmp_path / "bad.toml").write_text("[train\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        resolve_run_config(DDPMRunConfig, {}, tmp_path / "bad.toml", {})
    with pytest.raises(ConfigError, match="not found"):
        resolve_run_config(DDPMRunConfig, {}, tmp_path / "missing.yaml", {})
    (tmp_path / "w.safetensors").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"must be \.toml, \.yaml or \.json"):
        resolve_run_config(DDPMRunConfig, {}, tmp_path / "w.safetensors", {})


def test_config_is_frozen_and_round_trips():
    cfg = resolve_run_config(DDPMRunConfig, {"train.epochs": 2}, environ={})
    with pytest.raises(ValueError):
        cfg.train.epochs = 3  # type: ignore[misc]
    again = DDPMRunConfig.model_validate(json.loads(cfg.model_dump_json()))
    assert again == cfg


def test_env_layer_ignores_machine_settings():
    assert env_layer(
        DDPMRunConfig, {"DIFFKIT_DATA_DIR": "/x", "DIFFKIT_MODEL__DROPOUT": "0.2"}
    ) == {"model": {"dropout": 0.2}}


@pytest.mark.parametrize(
    "text", ['{"train": {"lr": NaN}}', '{"diffusion": {"beta_end": Infinity}}']
)
def test_non_finite_numbers_in_a_config_file_are_refused(tmp_path: Path, text: str):
    cfg = tmp_path / "c.json"
    cfg.write_text(text)  # Python's json reads NaN and Infinity
    with pytest.raises(ConfigError, match="finite number"):
        resolve_run_config(DDPMRunConfig, {"preset": "tiny"}, cfg)


@pytest.mark.parametrize(
    ("layers", "where"),
    [
        (({"train": 5}, {}), "train"),
        (({}, {"DIFFKIT_TRAIN": "5"}), "train"),
        (({"train": {"epochs": {"a": 1}}}, {}), "train.epochs"),
    ],
)
def test_a_plain_value_never_silently_replaces_a_section(tmp_path: Path, layers, where):
    file_layer, env = layers
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(file_layer))
    flags = {"preset": "tiny", "train.max_steps": 1}  # a flag in the same section as the 5
    with pytest.raises(ConfigError, match=f"invalid {where}: .*must be one or the other"):
        resolve_run_config(DDPMRunConfig, flags, cfg, environ=env)


def test_every_validation_error_is_named_at_once():
    import pytest

    from diffkit.config.resolve import ConfigError, validate
    from diffkit.config.run import DDPMRunConfig

    with pytest.raises(ConfigError) as exc:
        validate(DDPMRunConfig, {"train": {"epochs": 0, "lr": -1}, "data": {"limit": 0}})
    line = str(exc.value)
    assert "\n" not in line
    assert all(f"invalid {key}" in line for key in ("train.epochs", "train.lr", "data.limit"))


@pytest.mark.parametrize(
    "kind, flags",
    [
        ("DDPMRunConfig", {"preset": "tiny", "model.num_classes": 10, "train.max_steps": 7}),
        ("FlowRunConfig", {"preset": "small"}),
        ("ClassifierRunConfig", {}),
        ("VAERunConfig", {}),
        ("DenoiserRunConfig", {}),
    ],
)
def test_to_toml_reads_back_to_the_same_config(tmp_path: Path, kind, flags):
    from diffkit.config import run
    from diffkit.config.resolve import to_toml

    model = getattr(run, kind)
    cfg = resolve_run_config(model, flags, environ={})
    file = tmp_path / "c.toml"
    file.write_text(to_toml(cfg.model_dump(mode="json")))
    assert resolve_run_config(model, {}, file, environ={}) == cfg


def test_unknown_env_names_the_closest_setting():
    from diffkit.config import run
    from diffkit.config.resolve import env_names, unknown_env
    from diffkit.config.settings import Settings

    known = env_names([run.DDPMRunConfig, run.FlowRunConfig], Settings)
    assert {"DIFFKIT_TRAIN__EPOCHS", "DIFFKIT_MODEL__BASE_CHANNELS", "DIFFKIT_DEVICE",
            "DIFFKIT_FLOW__TIME_SAMPLING", "DIFFKIT_THREADS"} <= known  # fmt: skip
    environ = {"DIFFKIT_TRAIN__EPOCS": "3", "DIFFKIT_TRAIN__EPOCHS": "3", "HOME": "/",
               "DIFFKIT_TEST_DATA_DIR": "/x", "DIFFKIT_ZZZ": "1"}  # fmt: skip
    lines = unknown_env(known, environ)
    assert lines == [
        "DIFFKIT_TRAIN__EPOCS is not a diffkit setting (did you mean DIFFKIT_TRAIN__EPOCHS?); "
        "ignored",
        "DIFFKIT_ZZZ is not a diffkit setting; ignored",
    ]


def test_a_denoiser_config_that_names_its_wide_net_seeds_still_loads():
    """``train denoiser --net`` was ``small|seeds``; ``seeds`` is now ``wide``, and configs
    of older runs that say ``seeds`` read as ``wide``."""
    from diffkit.config.run import DenoiserRunConfig

    assert DenoiserRunConfig.model_validate({"net": "seeds"}).net == "wide"
    assert DenoiserRunConfig.model_validate({"net": "wide"}).net == "wide"
