"""Device and precision resolution; the only place that inspects the hardware."""

from __future__ import annotations

import torch

from diffkit.config.run import Precision
from diffkit.config.settings import DeviceChoice
from diffkit.errors import HardwareError


def resolve_device(choice: DeviceChoice, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise HardwareError("--device cuda was requested but no CUDA GPU is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX), not by emulation."""
    cpu = getattr(torch._C, "_cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks) if cpu else False


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or ``None`` for plain fp32.

    ``auto`` is bf16 where the hardware computes it natively (Ampere+ GPUs; CPUs with
    AVX512-BF16/AMX) and fp32 elsewhere: emulated bf16 is slower than fp32.
    """
    match precision:
        case "fp32":
            return None
        case "bf16":
            return torch.bfloat16
        case "fp16":
            if device.type != "cuda":
                raise HardwareError(
                    "fp16 autocast needs a CUDA device; use --precision bf16 on CPU"
                )
            return torch.float16
        case "auto":
            if device.type == "cuda":
                native = torch.cuda.is_bf16_supported(including_emulation=False)
                return torch.bfloat16 if native else None
            return torch.bfloat16 if cpu_has_native_bf16() else None
    raise ValueError(f"unknown precision {precision!r}")


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
