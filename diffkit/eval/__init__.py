"""Offline evaluation: feature networks, FID / KID / IS / precision-recall, sweeps."""

from diffkit.eval.classifiers import ClassifierChoice, ClassifierRecord, choose_classifier
from diffkit.eval.evaluate import Evaluator, load_samples
from diffkit.eval.features import (
    ClassifierFeatures,
    InceptionFeatures,
    TFInceptionFeatures,
    find_classifier,
    load_classifier,
    load_extractor,
    load_inception,
    load_tf_inception,
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
    "ClassifierChoice",
    "ClassifierFeatures",
    "ClassifierRecord",
    "Evaluator",
    "FeatureSet",
    "GaussianStats",
    "InceptionFeatures",
    "TFInceptionFeatures",
    "choose_classifier",
    "class_accuracy",
    "find_classifier",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "load_classifier",
    "load_extractor",
    "load_inception",
    "load_samples",
    "load_tf_inception",
    "precision_recall",
    "real_features",
]
