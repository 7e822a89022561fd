"""Adversarial-example detection with a committee of per-class detectors (GAT; T Sec. 3.2).

    import atebm.gat as gat
    gat.run_gat_train("runs/gat", preset="mnist", workers=2)   # = atebm gat train --preset mnist --workers 2 ...
    committee = gat.load("runs/gat")          # nn.Module: [0, 1] images -> (N, K) logits z_{d_k}(x) + c_k
    d0 = committee.detector(0)                # score model of class 0 (one score per sample)
    gat.run_gat_eval("runs/gat", "runs/gat")  # = atebm gat eval: AUC tables, detection curves (ours + ART), CW

The generative robust classifier (T Sec. 3.4)::

    gat.run_gat_calibrate("runs/gat")                      # = atebm gat calibrate (train calibrates at the end)
    gat.run_gat_robust_softmax("runs/gat")                 # Madry baseline -> runs/gat/robust_softmax.pt
    gat.run_gat_classify_eval("runs/gat", "runs/gat", softmax=["runs/gat/robust_softmax.pt"])
    gat.run_gat_explain("runs/gat", "runs/gat", softmax=["runs/gat/robust_softmax.pt"])

Modules: ``networks`` (T Tab. 3.1), ``presets``, ``data`` (labelled splits), ``training`` (the detectors through
atebm.Trainer), ``classifier`` (the softmax f), ``committee``, ``attacks`` (T Eq. 3.30-3.35, 3.47-3.48),
``detection`` (T Eq. 3.27-3.29), ``evaluate`` (T Tab. 3.2-3.6, Fig. 3.2, through atebm.attacks), ``calibration``
(T Eq. 3.40-3.43),
``robust`` (in/out AT preset, Madry baseline, T Eq. 3.16, 3.45), ``classify`` (robust accuracy, T Tab. 3.14,
Fig. 3.7), ``explain`` (T Fig. 3.8-3.10, Tab. 3.15), ``pipeline`` (the commands).
"""
from .attacks import (
                      OBJECTIVES,
                      ClassifierAttack,
                      CombinedAttack,
                      DetectorAttack,
                      IntegratedView,
                      SingleDetectorAttack,
                      SwitchingAttack,
                      per_class_candidates,
)
from .calibration import calibrate_committee, fit_offsets, run_gat_calibrate
from .classifier_robustness import CLASSIFY_PROTOCOLS, ClassifyEvalConfig, accuracy_grid, robust_accuracy
from .committee import Committee, load_committee, save_committee
from .data import LabelledSplits, class_view, labelled_splits
from .explain import ClassScore, explain_models, integrated_gradients
from .networks import ConvPoolNet
from .pipeline import run_gat_classify_eval, run_gat_eval, run_gat_explain, run_gat_robust_softmax, run_gat_train
from .presets import (
           CLASSIFY_PRESET_NAMES,
           GAT_PRESETS,
           ClassifierRecipe,
           GatPreset,
           ValidationRecipe,
           detector_model_spec,
           get_gat_preset,
)
from .robust_training import CLASSIFY_PRESETS, train_madry_classifier
from .training import (
                      DetectorTrainer,
                      DetectorValidation,
                      assemble_committee,
                      detector_dir,
                      detector_selection,
                      train_detector,
                      train_detectors,
)

load = load_committee

__all__ = ["load", "load_committee", "save_committee", "Committee", "ConvPoolNet", "GatPreset", "ValidationRecipe",
           "ClassifierRecipe", "GAT_PRESETS", "get_gat_preset", "detector_model_spec", "LabelledSplits",
           "labelled_splits", "class_view", "DetectorTrainer", "DetectorValidation", "detector_selection",
           "train_detector", "train_detectors", "assemble_committee", "detector_dir", "ClassifierAttack",
           "DetectorAttack", "CombinedAttack", "SwitchingAttack", "SingleDetectorAttack", "IntegratedView",
           "OBJECTIVES", "run_gat_train", "run_gat_eval", "per_class_candidates", "fit_offsets", "calibrate_committee",
           "run_gat_calibrate", "CLASSIFY_PROTOCOLS", "ClassifyEvalConfig", "accuracy_grid", "robust_accuracy",
           "ClassScore", "explain_models", "integrated_gradients", "CLASSIFY_PRESETS", "CLASSIFY_PRESET_NAMES",
           "train_madry_classifier", "run_gat_robust_softmax", "run_gat_classify_eval", "run_gat_explain"]
