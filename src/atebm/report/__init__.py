"""The run report: one self-contained ``report.html`` per run folder (METHOD Sec. 6; docs/commands/report.md).

Several commands (train, demo, eval-ood, toy2d, apps) contribute sections to the same run's report::

    from atebm.report import Report

    report = Report.open("runs/demo", title="MNIST demo")
    report.add_curves("train/curves", "Training curves", trainer.history)
    report.add_image("train/samples", "Samples", "samples.png", caption="32 steps x 0.2 from photo patches")
    report.add_table("ood/auroc", "Worst-case AUROC", ["set", "eps=0", "eps=1"], rows, protocol={...})
    report.save()          # writes report.json and report.html

The state lives in ``run_dir/report.json`` (sections in insertion order; adding a section whose key already
exists replaces it in place), so a later command re-opens the report and adds to it. ``report.html`` embeds
every image as a base64 data URI and needs nothing but a browser.
"""
from .html import render_html
from .report import Report, render

__all__ = ["Report", "render", "render_html"]
