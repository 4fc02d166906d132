"""Datasets held in memory and batched by slicing."""

from diffkit.data.loader import TensorBatches, to_uint8, to_unit_range
from diffkit.data.registry import DataError, ImageData, load_dataset

__all__ = ["DataError", "ImageData", "TensorBatches", "load_dataset", "to_uint8", "to_unit_range"]
