import pytest
import torch

from diffkit.config import PRESETS, TrainConfig, UNetConfig
from diffkit.data import ImageData, TensorBatches
from diffkit.nn import build_model
from diffkit.objectives.ddpm import DDPMObjective
from diffkit.schedules import make_schedule
from diffkit.training import train
from diffkit.training.hardware import (
    HardwareError,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
)

CPU = torch.device("cpu")


def test_precision_resolution_on_cpu():
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert resolve_precision("auto", CPU) is expected
    with pytest.raises(HardwareError, match="fp16 autocast needs a CUDA device"):
        resolve_precision("fp16", CPU)


def test_device_resolution():
    assert resolve_device("cpu") == CPU
    if not torch.cuda.is_available():
        assert resolve_device("auto") == CPU
        with pytest.raises(HardwareError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_bf16_autocast_trains_on_cpu():
    model = build_model(UNetConfig(**PRESETS["tiny"]["model"]))
    data = ImageData(torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8), None)
    batches = TensorBatches(data, 8, seed=0, device=CPU)
    cfg = TrainConfig(epochs=1, batch_size=8, warmup_steps=0, sample_every=0, log_every=1)
    result = train(
        model,
        DDPMObjective(make_schedule("linear")),
        batches,
        cfg,
        device=CPU,
        autocast_dtype=torch.bfloat16,
        run=None,
        run_config={},
    )
    assert result.reason == "finished" and result.step == 2
    assert result.last_loss is not None and result.last_loss < 10
    assert all(p.dtype == torch.float32 for p in model.parameters())
