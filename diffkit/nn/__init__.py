"""Plain ``nn.Module`` networks."""

from diffkit.nn.build import build_model, count_parameters

__all__ = ["build_model", "count_parameters"]
