"""The training loop and its parts."""

from diffkit.training.loop import TrainEvent, TrainResult, train

__all__ = ["TrainEvent", "TrainResult", "train"]
