"""Inference acceleration that wraps a trained network from the outside."""

from diffkit.accel.deepcache import CacheConfig, DeepCache

__all__ = ["CacheConfig", "DeepCache"]
