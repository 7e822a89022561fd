"""Evaluation metrics: OOD detection (AUROC family), generation quality (Fréchet distance, KID, Inception-style
score, nearest neighbours, the sampling-efficiency table, diversity relative to held-out real images) and image
quality (SSIM, PSNR).

Which network produced a generation metric is part of the number: :func:`digit_features` (a digit classifier
trained on the MNIST 5,000 train split) for the embedded default, :func:`fashion_features` (the same recipe on
Fashion-MNIST), the standard FID Inception of the optional extra ``fid`` (:func:`fid_inception`), or a local
TorchScript Inception-v3 (:class:`InceptionFeatures`) the user passes.
"""
from .detection import aupr_in, aupr_out, auroc, detection_metrics, fpr_at_tpr, roc_points
from .features import (
    FeatureClassifier,
    InceptionFeatures,
    digit_features,
    fashion_features,
    fid_inception,
    load_feature_net,
    recipe_features,
    train_feature_classifier,
)
from .generative import (
                         MIN_CLASS_SHARE,
                         classes_covered,
                         diversity_metrics,
                         efficiency_pairs,
                         frechet_distance,
                         generation_metrics,
                         inception_score,
                         kid,
                         mean_nn_distance,
                         nearest_neighbour_grid,
                         nearest_neighbours,
                         sampling_efficiency,
)
from .image_quality import psnr, ssim

__all__ = ["auroc", "aupr_in", "aupr_out", "fpr_at_tpr", "detection_metrics", "roc_points",
           "FeatureClassifier", "InceptionFeatures", "digit_features", "fashion_features", "recipe_features",
           "fid_inception", "load_feature_net", "train_feature_classifier",
           "frechet_distance", "kid", "inception_score", "nearest_neighbours", "mean_nn_distance",
           "nearest_neighbour_grid", "generation_metrics", "efficiency_pairs", "sampling_efficiency",
           "diversity_metrics", "classes_covered", "MIN_CLASS_SHARE",
           "ssim", "psnr"]
