"""OOD detection with score models: clean and worst-case evaluation, attackers and benchmark suites
(METHOD Sec. 3; E Tab. 4, supp. Tab. 8; G Sec. 5, App. G and J).

    from atebm.ood import evaluate, embedded_suites, in_distribution
    result = evaluate({"AT": at_model, "OE (K=0)": oe_model}, in_distribution(), embedded_suites(),
                      eps_list=(0, 1, 2, 3, 5, 8), out_dir="runs/demo", report="runs/demo")

or, with exactly the sets and defaults of ``atebm eval-ood`` (so that the command reproduces the numbers)::

    result = run_eval_ood({"AT": at_model, "OE (K=0)": oe_model}, "runs/demo")
"""
from .attacks import ATTACKERS, AttackConfig, TwoClassAdapter, WorstCase, batched_scores, worst_case
from .pipeline import DEFAULTS, run_eval_ood
from .evaluate import add_to_report, compare_models, evaluate, format_table
from .suites import EMBEDDED_SUITES, available_fonts, embedded_suite, embedded_suites, file_suite, in_distribution, letters

__all__ = ["worst_case", "WorstCase", "AttackConfig", "TwoClassAdapter", "batched_scores", "ATTACKERS",
           "evaluate", "format_table", "add_to_report", "compare_models", "run_eval_ood", "DEFAULTS",
           "EMBEDDED_SUITES", "embedded_suites", "embedded_suite", "in_distribution", "letters", "available_fonts",
           "file_suite"]
