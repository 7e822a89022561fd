"""Denoising and inpainting on MNIST, measured like T Sec. 2.5.3 (Tab. 2.7-2.8) but over whole splits.

Protocol (printed into the JSON and the run report beside every table):

* Model: ``--checkpoint`` (default: the apps reference model of benchmarks/apps_train_reference.py).
* Data: the embedded MNIST 5,000 stratified splits; the sampler settings are chosen on the **val** split
  (500 images) to maximise mean SSIM, then applied once to the **test** split (1,000 images).
* Denoising: Gaussian noise sigma in {0.1, 0.2, 0.3} (clipped to [0, 1]) and salt-and-pepper (10 % of the
  pixels); PGD ascent from the noisy image, unconstrained, L2 steps; the number of steps (0..--max-steps) and
  the step size (--step-sizes) that maximise mean val SSIM are used on test. Step 0 is allowed, so "restored"
  can never be chosen worse than "noisy" on val.
* Inpainting: masks centre square (half the side), 3 random boxes (sides 15-35 %), 50 % random pixels; holes
  filled with 0 (black); PGD ascent on the hole pixels only; steps/step size chosen on val as above.
  Baselines (T Fig. 2.14): NN patch (oracle: the training image whose pixels under the hole are nearest to
  the ground truth there, copied into the hole), NN image from the original, from the occluded image, and
  from the visible pixels only (whole nearest training image). Bank: the MNIST train split (3,500 images).
* SSIM: skimage ``structural_similarity`` (7x7 window, data range 1) via atebm.metrics.ssim; PSNR in dB.
  Distributions over the images: mean, std, quartiles, min, max.

    python benchmarks/apps_restore.py --checkpoint runs/apps_reference/checkpoint.pt

Results: benchmarks/results/apps_restore.json, comparison grids and tables in the checkpoint's run folder
(report.html).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import atebm
from atebm.apps import (
    add_gaussian_noise,
    add_salt_pepper,
    denoise,
    denoise_trajectory,
    inpaint,
    inpaint_trajectory,
    make_mask,
    nn_image_inpaint,
    nn_patch_inpaint,
    occlude,
    summarize,
)
from atebm.data import load_dataset
from atebm.io import save_grid
from atebm.metrics import psnr, ssim
from atebm.report import Report
from atebm.training import write_json

RESULTS = Path(__file__).resolve().parent / "results"
SIGMAS = (0.1, 0.2, 0.3)
MASKS = {
    "centre square (1/2 side)": {"kind": "center", "size": 0.5},
    "3 random boxes (15-35 % sides)": {"kind": "boxes", "count": 3, "min_size": 0.15, "max_size": 0.35},
    "50 % random pixels": {"kind": "pixels", "fraction": 0.5},
}
COLUMNS = ["images", "mean", "std", "min", "q1", "median", "q3", "max"]


def _row(label: str, values: np.ndarray) -> list:
    s = summarize(values)
    return [label] + [round(s[c], 4) for c in COLUMNS[1:]]


def _select(run_path, clean_val: torch.Tensor, corrupted_val: torch.Tensor, mask_val: torch.Tensor | None,
            step_sizes: list[float], max_steps: int, batch: int) -> dict:
    """Mean val SSIM for every (step size, steps <= max_steps) from one recorded run per step size (``run_path``:
    an application's ``*_trajectory`` twin); returns the best setting (ties go to fewer steps) and the whole
    curve."""
    record = list(range(max_steps + 1))
    table = {}
    for step_size in step_sizes:
        sums = np.zeros(max_steps + 1)
        for start in range(0, len(clean_val), batch):
            part = slice(start, start + batch)
            _, path = run_path(corrupted_val[part], None if mask_val is None else mask_val[part], max_steps,
                               step_size, record)
            for t in record:
                sums[t] += float(ssim(path[t], clean_val[part]).sum())
        table[step_size] = (sums / len(clean_val)).tolist()
    best = max(((s, t) for s in step_sizes for t in record), key=lambda st: (table[st[0]][st[1]], -st[1]))
    return {"step_size": best[0], "steps": best[1], "val_mean_ssim": table[best[0]][best[1]],
            "val_curve": {str(s): [round(v, 4) for v in table[s]] for s in step_sizes}}


def _batched(run, x: torch.Tensor, mask: torch.Tensor | None, steps: int, step_size: float,
             batch: int) -> torch.Tensor:
    return torch.cat([run(x[i:i + batch], None if mask is None else mask[i:i + batch], steps, step_size)
                      for i in range(0, len(x), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/apps_reference/checkpoint.pt")
    parser.add_argument("--report-dir", default=None, help="run folder whose report gets the tables "
                                                           "(default: the checkpoint's folder)")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--step-sizes", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--val", type=int, default=500, help="val images used for the choice (default: all 500)")
    parser.add_argument("--test", type=int, default=1000, help="test images (default: all 1000)")
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-denoise", action="store_true")
    parser.add_argument("--skip-inpaint", action="store_true")
    parser.add_argument("--results", default=str(RESULTS / "apps_restore.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    model = atebm.load(args.checkpoint)
    ckpt = Path(args.checkpoint)
    run_dir = Path(args.report_dir) if args.report_dir else (ckpt if ckpt.is_dir() else ckpt.parent)
    figures = run_dir / "apps_restore"
    val = load_dataset("mnist", split="val", n=args.val, seed=0).x
    test = load_dataset("mnist", split="test", n=args.test, seed=0).x
    protocol_base = {"checkpoint": str(args.checkpoint), "val_images": len(val), "test_images": len(test),
                     "selection": f"argmax mean val SSIM over steps 0..{args.max_steps} x step sizes "
                                  f"{args.step_sizes} (L2, unconstrained)",
                     "ssim": "skimage structural_similarity, 7x7 window, data_range 1"}
    results: dict = {"command": "python benchmarks/apps_restore.py " + " ".join(
        f"--{k.replace('_', '-')} {v if not isinstance(v, list) else ' '.join(map(str, v))}"
        for k, v in vars(args).items() if k not in ("results", "skip_denoise", "skip_inpaint") and v is not None),
        "protocol": protocol_base, "denoise": {}, "inpaint": {}}
    report = Report.open(run_dir)

    def run_denoise(x, _mask, steps, step_size):
        return denoise(model, x, steps, step_size)

    def denoise_path(x, _mask, steps, step_size, record):
        return denoise_trajectory(model, x, steps, step_size, record=record)

    def run_inpaint(x, mask, steps, step_size):
        return inpaint(model, x, mask, steps, step_size)

    def inpaint_path(x, mask, steps, step_size, record):
        return inpaint_trajectory(model, x, mask, steps, step_size, record=record)

    if not args.skip_denoise:
        rows, summary_rows = [], []
        noises = [(f"gaussian sigma={s}", lambda x, seed, s=s: add_gaussian_noise(x, s, seed=seed)) for s in SIGMAS]
        noises.append(("salt-and-pepper 10 %", lambda x, seed: add_salt_pepper(x, 0.1, seed=seed)))
        for label, noise in noises:
            t0 = time.perf_counter()
            noisy_val, noisy_test = noise(val, 11), noise(test, 12)
            choice = _select(denoise_path, val, noisy_val, None, args.step_sizes, args.max_steps, args.batch)
            restored = _batched(run_denoise, noisy_test, None, choice["steps"], choice["step_size"], args.batch)
            s_noisy, s_rest = ssim(noisy_test, test).numpy(), ssim(restored, test).numpy()
            p_noisy, p_rest = psnr(noisy_test, test).numpy(), psnr(restored, test).numpy()
            entry = {**choice, "ssim_noisy": summarize(s_noisy), "ssim_restored": summarize(s_rest),
                     "psnr_noisy": summarize(p_noisy), "psnr_restored": summarize(p_rest),
                     "fraction_ssim_improved": float((s_rest > s_noisy).mean()),
                     "first10_ssim_noisy": [round(float(v), 3) for v in s_noisy[:10]],
                     "first10_ssim_restored": [round(float(v), 3) for v in s_rest[:10]],
                     "seconds": round(time.perf_counter() - t0, 1)}
            results["denoise"][label] = entry
            setting = f"{choice['steps']} x {choice['step_size']}"
            rows += [_row(f"{label}: SSIM noisy", s_noisy), _row(f"{label}: SSIM restored ({setting})", s_rest),
                     _row(f"{label}: PSNR noisy", p_noisy), _row(f"{label}: PSNR restored ({setting})", p_rest)]
            summary_rows.append([label, setting, round(choice["val_mean_ssim"], 4),
                                 round(float(s_noisy.mean()), 4), round(float(s_rest.mean()), 4),
                                 round(float(p_noisy.mean()), 2), round(float(p_rest.mean()), 2),
                                 round(entry["fraction_ssim_improved"], 3)])
            name = "denoise_" + label.split()[0] + (label.split("=")[1] if "=" in label else "")
            grid = save_grid(figures / f"{name}.png", torch.cat([test[:12], noisy_test[:12], restored[:12]]),
                             nrow=12, scale=2)
            report.add_image(f"apps/bench/{name}", f"Denoising, {label}", grid.resolve(),
                             caption=f"rows: clean, noisy, restored ({setting}); first 12 test images")
            print(json.dumps({label: {k: entry[k] for k in ("steps", "step_size", "val_mean_ssim")},
                              "ssim_noisy": round(float(s_noisy.mean()), 4),
                              "ssim_restored": round(float(s_rest.mean()), 4)}), flush=True)
        protocol = {**protocol_base, "noise": "Gaussian (clipped) seed 11 val / 12 test; salt-and-pepper 10 % "
                    "pixels, half white"}
        report.add_table("apps/bench/denoise_summary", "Denoising MNIST test (T Tab. 2.7, whole split)",
                         ["noise", "steps x step size (val)", "val mean SSIM", "SSIM noisy", "SSIM restored",
                          "PSNR noisy (dB)", "PSNR restored (dB)", "fraction improved"], summary_rows,
                         protocol=protocol)
        report.add_table("apps/bench/denoise_distribution", "Denoising MNIST test: distributions", COLUMNS, rows,
                         protocol=protocol)

    if not args.skip_inpaint:
        bank = load_dataset("mnist", split="train", seed=0).x
        summary_rows, rows = [], []
        for label, spec in MASKS.items():
            t0 = time.perf_counter()
            kind = spec["kind"]
            kwargs = {k: v for k, v in spec.items() if k != "kind"}
            m_val = make_mask(kind, val.shape, seed=21, **kwargs)
            m_test = make_mask(kind, test.shape, seed=22, **kwargs)
            occ_val, occ_test = occlude(val, m_val, 0.0), occlude(test, m_test, 0.0)
            choice = _select(inpaint_path, val, occ_val, m_val, args.step_sizes, args.max_steps, args.batch)
            restored = _batched(run_inpaint, occ_test, m_test, choice["steps"], choice["step_size"], args.batch)
            nn_patch = nn_patch_inpaint(test, m_test, bank, occ_test)
            nn_orig = nn_image_inpaint(test, m_test, bank, "original")
            nn_occ = nn_image_inpaint(occ_test, m_test, bank, "occluded")
            nn_vis = nn_image_inpaint(occ_test, m_test, bank, "visible")
            values = {"occluded": ssim(occ_test, test).numpy(), "restored (ours)": ssim(restored, test).numpy(),
                      "NN patch (oracle)": ssim(nn_patch, test).numpy(),
                      "NN image from original (oracle)": ssim(nn_orig, test).numpy(),
                      "NN image from occluded": ssim(nn_occ, test).numpy(),
                      "NN image from visible pixels": ssim(nn_vis, test).numpy()}
            psnrs = {"occluded": psnr(occ_test, test).numpy(), "restored (ours)": psnr(restored, test).numpy()}
            entry = {**choice, "missing_fraction": round(float(m_test.float().mean()), 4),
                     "ssim": {k: summarize(v) for k, v in values.items()},
                     "psnr": {k: summarize(v) for k, v in psnrs.items()},
                     "fraction_restored_beats_occluded": float((values["restored (ours)"] > values["occluded"]).mean()),
                     "fraction_restored_beats_nn_patch":
                         float((values["restored (ours)"] > values["NN patch (oracle)"]).mean()),
                     "seconds": round(time.perf_counter() - t0, 1)}
            results["inpaint"][label] = entry
            setting = f"{choice['steps']} x {choice['step_size']}"
            summary_rows.append([label, setting] + [round(float(v.mean()), 4) for v in values.values()])
            rows += [_row(f"{label}: {k}", v) for k, v in values.items()]
            name = f"inpaint_{kind}"
            grid = save_grid(figures / f"{name}.png",
                             torch.cat([test[:12], occ_test[:12], restored[:12], nn_patch[:12], nn_orig[:12],
                                        nn_vis[:12]]), nrow=12, scale=2)
            report.add_image(f"apps/bench/{name}", f"Inpainting, {label}", grid.resolve(),
                             caption=f"rows: clean, occluded, ours ({setting}), NN patch (oracle), NN image from "
                                     "original (oracle), NN image from visible pixels; first 12 test images")
            print(json.dumps({label: {k: entry[k] for k in ("steps", "step_size", "val_mean_ssim")},
                              **{k: round(float(v.mean()), 4) for k, v in values.items()}}), flush=True)
        protocol = {**protocol_base, "fill": 0.0, "mask_seeds": "21 val / 22 test",
                    "nn_bank": f"MNIST train split ({len(bank)} images)"}
        report.add_table("apps/bench/inpaint_summary", "Inpainting MNIST test: mean SSIM (T Tab. 2.8, whole split)",
                         ["mask", "steps x step size (val)"] + list(values), summary_rows, protocol=protocol)
        report.add_table("apps/bench/inpaint_distribution", "Inpainting MNIST test: SSIM distributions", COLUMNS,
                         rows, protocol=protocol)

    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["torch_threads"] = torch.get_num_threads()
    report.save()
    write_json(args.results, results)
    print(f"wrote {args.results} and {report.path}")


if __name__ == "__main__":
    main()
