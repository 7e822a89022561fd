"""OOD detection with score models: clean and worst-case evaluation, attackers and benchmark suites
(METHOD Sec. 3; E Tab. 4, supp. Tab. 8; G Sec. 5, App. G and J).

    from atebm.ood import evaluate, embedded_suites, in_distribution
    result = evaluate({"AT": at_model, "OE (K=0)": oe_model}, in_distribution(), embedded_suites(),
                      eps=(0, 1, 2, 3, 5, 8), out_dir="runs/demo", report="runs/demo")

or, with exactly the sets and defaults of ``atebm eval-ood`` (so that the command reproduces the numbers)::

    result = run_eval_ood({"AT": at_model, "OE (K=0)": oe_model}, "runs/demo")

Every default of the protocol lives in :class:`OODEvalConfig`, every default of the attacks in
:class:`AttackConfig` (held by it). This package imports no command-line code.
"""
from .attacks import ATTACKERS, AttackConfig, WorstCase, attack_protocol, batched_scores, worst_case
from .evaluate import (
    OODEvalConfig,
    OODEvaluation,
    add_to_report,
    compare_models,
    compute_ood,
    evaluate,
    format_table,
    write_ood,
)
from .pipeline import input_geometry, run_eval_ood
from .scores import MaxSoftmaxScore
from .suites import (
    ALL_SUITES,
    EMBEDDED_SUITES,
    OPTIONAL_SUITES,
    available_fonts,
    embedded_suite,
    embedded_suites,
    file_suite,
    in_distribution,
    letters,
)

__all__ = ["worst_case", "WorstCase", "AttackConfig", "batched_scores", "attack_protocol", "ATTACKERS",
           "OODEvalConfig", "OODEvaluation", "evaluate", "compute_ood", "write_ood", "format_table", "add_to_report",
           "compare_models", "run_eval_ood", "input_geometry", "MaxSoftmaxScore",
           "EMBEDDED_SUITES", "OPTIONAL_SUITES", "ALL_SUITES", "embedded_suites", "embedded_suite", "in_distribution",
           "letters", "available_fonts", "file_suite"]
