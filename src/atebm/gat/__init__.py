"""Adversarial-example detection with a committee of per-class detectors (GAT; T Sec. 3.2).

    import atebm.gat as gat
    gat.run_gat_train("runs/gat", preset="mnist", workers=2)   # = atebm gat train --preset mnist --workers 2 ...
    committee = gat.load("runs/gat")          # nn.Module: [0, 1] images -> (N, K) logits z_{d_k}(x) + c_k
    d0 = committee.detector(0)                # score model of class 0 (one score per sample)
    gat.run_gat_eval("runs/gat", "runs/gat")  # = atebm gat eval: AUC tables, detection curves, ART check, CW

Modules: ``networks`` (T Tab. 3.1), ``presets``, ``data`` (labelled splits), ``training`` (the detectors through
atebm.Trainer), ``classifier`` (the softmax f), ``committee``, ``attacks`` (T Eq. 3.30-3.35), ``detection``
(T Eq. 3.27-3.29), ``evaluate`` (T Tab. 3.2-3.6, Fig. 3.2), ``pipeline`` (the two commands).
"""
from .attacks import (
                      OBJECTIVES,
                      ClassifierAttack,
                      CombinedAttack,
                      DetectorAttack,
                      SingleDetectorAttack,
                      SwitchingAttack,
                      ThresholdMargin,
                      run_attack,
)
from .committee import Committee, load_committee, save_committee
from .data import LabelledSplits, class_view, labelled_splits
from .networks import ConvPoolNet
from .pipeline import run_gat_eval, run_gat_train
from .presets import GAT_PRESETS, GatPreset, detector_model_spec, get_gat_preset
from .training import (
                      DetectorTrainer,
                      ValidationSelector,
                      assemble_committee,
                      detector_dir,
                      train_detector,
                      train_detectors,
)

load = load_committee

__all__ = ["load", "load_committee", "save_committee", "Committee", "ConvPoolNet", "GatPreset", "GAT_PRESETS",
           "get_gat_preset", "detector_model_spec", "LabelledSplits", "labelled_splits", "class_view",
           "DetectorTrainer", "ValidationSelector", "train_detector", "train_detectors", "assemble_committee",
           "detector_dir",
           "ClassifierAttack", "DetectorAttack", "CombinedAttack", "SwitchingAttack", "SingleDetectorAttack",
           "ThresholdMargin", "OBJECTIVES", "run_attack", "run_gat_train", "run_gat_eval"]
