"""Adversarial-example detection with a committee of per-class detectors (GAT; T Sec. 3.2).

    import atebm.gat as gat
    committee = gat.load("runs/gat")          # nn.Module: [0, 1] images -> (N, K) logits z_{d_k}(x) + c_k
    d0 = committee.detector(0)                # score model of class 0 (one score per sample)
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
           "ThresholdMargin", "OBJECTIVES", "run_attack"]
