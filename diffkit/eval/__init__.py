"""Offline evaluation: feature networks, FID / KID / IS / precision-recall, sweeps."""

from diffkit.eval.evaluate import Evaluator, load_samples
from diffkit.eval.features import (
    ClassifierFeatures,
    InceptionFeatures,
    find_classifier,
    load_classifier,
    load_inception,
)
from diffkit.eval.metrics import (
    GaussianStats,
    class_accuracy,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from diffkit.eval.reference import FeatureSet, real_features

__all__ = [
    "ClassifierFeatures",
    "Evaluator",
    "FeatureSet",
    "GaussianStats",
    "InceptionFeatures",
    "class_accuracy",
    "find_classifier",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "load_classifier",
    "load_inception",
    "load_samples",
    "precision_recall",
    "real_features",
]
