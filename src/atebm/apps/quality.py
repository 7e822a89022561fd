"""Distribution summaries for per-image quality numbers (SSIM/PSNR come from :mod:`atebm.metrics`): the thesis
reports SSIM for ten images (T Tab. 2.7-2.8); we report the distribution over the whole split."""
from __future__ import annotations

import numpy as np

__all__ = ["summarize"]


def summarize(values) -> dict[str, float]:
    """``n``, mean, standard deviation (ddof 1), min, quartiles (q1, median, q3) and max of the finite values,
    and ``non_finite``, the count of the others (PSNR is inf for an unchanged image)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    out: dict[str, float] = {"n": int(values.size), "non_finite": int(values.size - finite.size)}
    if finite.size == 0:
        return out
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    out.update({"mean": float(finite.mean()), "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
                "min": float(finite.min()), "q1": float(q1), "median": float(median), "q3": float(q3),
                "max": float(finite.max())})
    return out
