"""Semi-supervised learning with DSGAN complement samples (S Sec. 4.1, 5.1, Tab. 1-4), in :class:`atebm.Trainer`.

The trainer's score model is the K+1-class discriminator of Salimans et al. (2016) / Dai et al. (2017): the
:class:`~atebm.dsgan.networks.SSLClassifier` of S Tab. 4 with K logits ``l_k`` and the implicit class K+1, whose
score ``log Z(x) = log sum_k exp l_k(x)`` gives ``D(x) = Z / (Z + 1)`` = P(one of the K real classes | x). One
iteration minimises (S Eq. 4, written as a loss)::

    CE(l(x_lab), y_lab)  +  w_unl · [ -mean log D(x_unl) - mean log(1 - D(x_gen)) ]

which is binary AT's BCE loss on the score ``log Z`` with generated images as the negatives, plus the supervised
cross-entropy on a labelled batch. What makes the negatives is the ``mode``:

* ``dsgan`` - the generator of S Tab. 4 trained by DSGAN **in the classifier's feature space** (the last hidden
  layer, 250-d; S Sec. 5.1, App. D.2): a separate feature discriminator (an MLP, WGAN-GP critic, lambda 10) sees
  p_dbar = ``beta f(x_lab) + (1 - beta) f(x_unl)``, ``beta ~ U(0, 0.3)`` (S Eq. 8, Tab. 3) as real and the
  mixture ``(1 - alpha) f(G(z)) + alpha f(x_unl)`` (alpha 0.8, sampling trick) as fake; the generator then
  descends ``-D_f(f(G(z)))``. Its samples are complements: between classes, off the data (S Eq. 7-8).
* ``feature-matching`` - the baseline of Salimans et al. (2016): the generator minimises
  ``||mean f(x_unl) - mean f(G(z))||^2``.
* ``supervised`` - no generator and ``w_unl = 0``: the same network trained on the labelled images alone (S Eq. 5).

The feature networks of the generator steps read ``f`` with the classifier in eval mode (no input noise); the
generator's gradient flows through ``f`` but only the generator's (and the feature critic's) parameters move.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..config import above, at_least, checked_by, one_of, setting
from ..data import ImageSet, load_dataset
from ..models import build_score_model
from ..training import Objective, Trainer, write_json
from ..training.config import TrainerOptions
from ..training.trainer import fetch_batch
from .losses import check_alpha, discriminator_loss, fake_weights, generator_loss, gradient_penalty, mixture_sizes
from .networks import SSLClassifier, build_generator
from .sources import check_weight_range, interpolate

__all__ = ["SSL_MODES", "SemiSupervised", "SSLConfig", "labelled_subset", "train_ssl", "run_ssl_benchmark",
           "test_error", "SSL_CLASSIFIER", "PAPER_MNIST_ERRORS"]

SSL_MODES = ("dsgan", "feature-matching", "supervised")
SSL_CLASSIFIER: dict[str, Any] = {"arch": "ssl_mlp", "kwargs": {"in_features": 784, "num_classes": 10}}
#: S Tab. 1-2: MNIST (60,000 unlabelled, 100 labels) test errors out of 10,000, mean (std) over 10 runs.
PAPER_MNIST_ERRORS = {"DSGAN (S Tab. 1, with the sampling trick)": (82.7, 4.6),
                      "DSGAN without the sampling trick (S Tab. 2)": (91.0, 7.0),
                      "feature matching (Salimans et al. 2016, S Tab. 1)": (93.0, 6.5),
                      "badGAN (Dai et al. 2017, S Tab. 1)": (79.5, 9.8)}


class SemiSupervised(Objective):
    """The semi-supervised objective (module doc). ``labelled`` is an :class:`ImageSet` with labels (the trainer's
    p_0 source is the same set; no log quantity reads it). Owns the generator, the feature critic, their optimisers
    and its random generator; all are checkpointed.

    Its log lines hold (means over the log window): ``loss`` (the classifier's, the sum below), ``loss_sup`` and
    ``acc_lab`` (cross-entropy and accuracy on the labelled batch), ``loss_unl`` (the unlabelled term), and with a
    generator ``score_unl`` / ``score_gen`` (mean ``log Z`` of unlabelled and generated images), ``auc_gen`` (AUC of
    unlabelled against generated images under ``log Z``), ``loss_g``, and in ``dsgan`` mode ``critic_loss`` and
    ``critic_gp``; no ``k`` and no AUC against the labelled set."""

    kind = "dsgan-ssl"
    perturbs_p0 = False
    log_names = {"k": None, "r1": None, "auc_clean": None, "score_data": "score_unl", "score_adv": "score_gen",
                 "auc_adv": "auc_gen"}

    def __init__(self, labelled: ImageSet, *, mode: str = "dsgan", generator: dict[str, Any] | None = None,
                 feature_critic: dict[str, Any] | None = None, alpha: float = 0.8,
                 weight_range: Sequence[float] = (0.0, 0.3), critic_steps: int = 1, gp_weight: float = 10.0,
                 unlabelled_weight: float = 1.0, labelled_batch: int = 100, g_lr: float = 3e-3,
                 critic_lr: float = 1e-4, betas: Sequence[float] = (0.5, 0.999), seed: int = 0) -> None:
        if mode not in SSL_MODES:
            raise ValueError(f"mode must be one of {SSL_MODES}, got {mode!r}")
        if not isinstance(labelled, ImageSet) or labelled.y is None:
            raise ValueError("semi-supervised training needs the labelled images as an ImageSet with labels")
        if int(critic_steps) != critic_steps or critic_steps < 1 or labelled_batch < 1 or unlabelled_weight < 0:
            raise ValueError("need critic_steps >= 1 (an integer), labelled_batch >= 1, unlabelled_weight >= 0")
        self.labelled, self.mode = labelled, mode
        self.alpha, self.weight_range = check_alpha(alpha), check_weight_range(weight_range)
        self.critic_steps, self.gp_weight = int(critic_steps), float(gp_weight)
        self.unlabelled_weight = 0.0 if mode == "supervised" else float(unlabelled_weight)
        self.labelled_batch, self.g_lr, self.critic_lr = int(labelled_batch), float(g_lr), float(critic_lr)
        self.betas, self.seed = tuple(float(b) for b in betas), int(seed)
        self.generator_spec = dict(generator or {"arch": "image", "kwargs": {"latent_dim": 100, "channels": 1,
                                                                             "size": 28}})
        self.critic_spec = dict(feature_critic or {"arch": "mlp2d", "kwargs": {"in_dim": 250, "hidden": 400,
                                                                               "depth": 3, "activation": "relu"}})
        self.rng = torch.Generator().manual_seed(self.seed + 5)
        self.generator = build_generator(self.generator_spec, seed=self.seed + 2) if mode != "supervised" else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 4)
            self.critic = build_score_model(self.critic_spec) if mode == "dsgan" else None
        self.g_optimizer = None if self.generator is None else torch.optim.Adam(
            self.generator.parameters(), lr=self.g_lr, betas=(self.betas[0], self.betas[1]))
        self.c_optimizer = None if self.critic is None else torch.optim.Adam(
            self.critic.parameters(), lr=self.critic_lr, betas=(0.5, 0.9))

    # ----------------------------------------------------------------------------------- checkpoint plumbing
    @classmethod
    def restore(cls, options: dict[str, Any], p0: Any) -> SemiSupervised:
        return cls(p0, **options)

    def options(self) -> dict[str, Any]:
        return {"mode": self.mode, "generator": self.generator_spec, "feature_critic": self.critic_spec,
                "alpha": self.alpha, "weight_range": list(self.weight_range), "critic_steps": self.critic_steps,
                "gp_weight": self.gp_weight, "unlabelled_weight": self.unlabelled_weight,
                "labelled_batch": self.labelled_batch, "g_lr": self.g_lr, "critic_lr": self.critic_lr,
                "betas": list(self.betas), "seed": self.seed}

    def _owned(self) -> list[tuple[str, torch.nn.Module, torch.optim.Optimizer]]:
        """``(name, network, its optimiser)`` of the networks this mode has: the generator, the feature critic."""
        owned: list[tuple[str, torch.nn.Module, torch.optim.Optimizer]] = []
        for name, net, opt in (("generator", self.generator, self.g_optimizer),
                               ("critic", self.critic, self.c_optimizer)):
            if net is not None:
                assert opt is not None
                owned.append((name, net, opt))
        return owned

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": self.rng.get_state()}
        for name, net, opt in self._owned():
            state[name] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
            state[f"{name}_optimizer"] = opt.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rng") is not None:
            self.rng.set_state(state["rng"])
        for name, net, opt in self._owned():
            if name in state:
                net.load_state_dict(state[name])
                if state.get(f"{name}_optimizer") is not None:
                    opt.load_state_dict(state[f"{name}_optimizer"])

    def setup(self, trainer: Trainer) -> None:
        """Moves the generator, the feature critic and their optimisers to the trainer's device
        (:meth:`Objective.setup`)."""
        if trainer.world > 1:
            raise ValueError("semi-supervised DSGAN trains in one process")
        for _, net, opt in self._owned():
            self.place(net, opt, trainer.device)

    def log_record(self, trainer: Trainer, record: dict[str, Any]) -> dict[str, Any]:
        record = super().log_record(trainer, record)
        if self.generator is None:  # supervised: the trainer's negatives are the labelled batch, not samples
            for key in ("score_unl", "score_gen", "auc_gen"):
                record.pop(key, None)
        return record

    # ----------------------------------------------------------------------------------- one iteration
    def _labelled_batch(self, device: torch.device) -> tuple[Tensor, Tensor]:
        idx = torch.randint(len(self.labelled), (self.labelled_batch,), generator=self.rng)
        assert self.labelled.y is not None
        return self.labelled.x[idx].to(device), self.labelled.y[idx].to(device)

    def negatives(self, trainer: Trainer, x0: Tensor) -> Tensor:
        if self.generator is None:
            return x0
        with torch.no_grad():
            return self.generator(self.generator.sample_latent(trainer.local_batch, self.rng)).to(x0)

    def loss(self, trainer: Trainer, s_data: Tensor, s_neg: Tensor) -> tuple[Tensor, dict[str, float]]:
        x_lab, y_lab = self._labelled_batch(trainer.device)
        logits = _classifier(trainer).logits(x_lab)
        supervised = F.cross_entropy(logits, y_lab)
        stats = {"loss_sup": float(supervised.detach()),
                 "acc_lab": float((logits.argmax(1) == y_lab).float().mean())}
        if self.unlabelled_weight == 0:
            return supervised, stats
        unsupervised = F.softplus(-s_data).mean() + F.softplus(s_neg).mean()
        stats["loss_unl"] = float(unsupervised.detach())
        return supervised + self.unlabelled_weight * unsupervised, stats

    def after_step(self, trainer: Trainer) -> dict[str, float]:
        if self.generator is None:
            return {}
        classifier = _classifier(trainer)
        classifier.eval()
        try:
            if self.mode == "dsgan":
                return self._dsgan_step(trainer, classifier)
            return self._feature_matching_step(trainer, classifier)
        finally:
            classifier.train()

    def _unlabelled(self, trainer: Trainer, n: int) -> Tensor:
        idx = torch.randint(len(trainer.data), (n,), generator=self.rng)
        return fetch_batch(trainer.data, idx).to(trainer.device, torch.float32)

    def _dsgan_step(self, trainer: Trainer, classifier: Any) -> dict[str, float]:
        assert self.generator is not None and self.critic is not None and self.c_optimizer is not None
        m = trainer.local_batch
        with torch.no_grad():
            f_unl = classifier.features(self._unlabelled(trainer, m))
            f_pair = classifier.features(self._unlabelled(trainer, m))
            f_lab = classifier.features(self._labelled_batch(trainer.device)[0][:m])
            real = interpolate(f_lab, f_pair[:len(f_lab)], self.weight_range, self.rng)
            n_gen, n_data = mixture_sizes(m, self.alpha)
            f_gen = classifier.features(self.generator.draw(n_gen, self.rng, batch=m))
        fake = torch.cat([f_gen, f_unl[:n_data]])
        weights = fake_weights(n_gen, n_data, self.alpha, True)
        critic_loss = discriminator_loss(self.critic(real), self.critic(fake), weights, "wgan-gp")
        gp = gradient_penalty(self.critic, real, fake, weights, self.rng)
        self.c_optimizer.zero_grad(set_to_none=True)
        (critic_loss + self.gp_weight * gp).backward()
        self.c_optimizer.step()
        stats = {"critic_loss": float(critic_loss.detach()), "critic_gp": float(gp.detach())}
        if (trainer.step + 1) % self.critic_steps == 0:
            f_g = classifier.features(self.generator(self.generator.sample_latent(m, self.rng)))
            loss_g = generator_loss(self.critic(f_g), "wgan")
            self._generator_update(loss_g)
            stats["loss_g"] = float(loss_g.detach())
        return stats

    def _feature_matching_step(self, trainer: Trainer, classifier: Any) -> dict[str, float]:
        assert self.generator is not None
        m = trainer.local_batch
        with torch.no_grad():
            target = classifier.features(self._unlabelled(trainer, m)).mean(0)
        f_g = classifier.features(self.generator(self.generator.sample_latent(m, self.rng)))
        loss_g = (f_g.mean(0) - target).pow(2).sum()
        self._generator_update(loss_g)
        return {"loss_g": float(loss_g.detach())}

    def _generator_update(self, loss: Tensor) -> None:
        assert self.generator is not None and self.g_optimizer is not None
        self.g_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.generator.parameters()))
        self.g_optimizer.step()


def _classifier(trainer: Trainer) -> SSLClassifier:
    backbone = trainer.model.backbone
    if not isinstance(backbone, SSLClassifier):
        raise TypeError(f"semi-supervised training needs the ssl_mlp classifier, got {type(backbone).__name__}")
    return backbone


@dataclass(frozen=True)
class SSLConfig(TrainerOptions):
    """Knobs of one semi-supervised run: the trainer's options (:class:`~atebm.training.config.TrainerOptions`:
    budgets, the classifier's optimiser, weight average, precision, data workers, bookkeeping) and the objective's
    fields below (S Sec. 5.1, App. D; Salimans et al. 2016 for the optimiser: Adam (0.5, 0.999) at 3e-3 for
    classifier and generator, batches of 100). ``max_iters`` counts classifier steps."""

    model: dict[str, Any] = setting(factory=lambda: dict(SSL_CLASSIFIER))
    batch_size: int = 100
    lr: float = 3e-3
    betas: tuple[float, float] = (0.5, 0.999)
    max_iters: int | None = 3000
    log_every: int = 100
    ckpt_every: int = 1000
    mode: str = setting("dsgan", one_of(*SSL_MODES))
    generator: dict[str, Any] = setting(factory=lambda: {"arch": "image", "kwargs": {"latent_dim": 100}})
    feature_critic: dict[str, Any] = setting(factory=lambda: {
        "arch": "mlp2d", "kwargs": {"in_dim": 250, "hidden": 400, "depth": 3, "activation": "relu"}})
    alpha: float = setting(0.8, checked_by(check_alpha))
    weight_range: tuple[float, float] = setting((0.0, 0.3), checked_by(check_weight_range))
    critic_steps: int = setting(1, at_least(1))
    gp_weight: float = setting(10.0, at_least(0))
    unlabelled_weight: float = setting(1.0, at_least(0))
    labelled_batch: int = setting(100, at_least(1))
    g_lr: float = setting(3e-3, above(0))
    critic_lr: float = setting(1e-4, above(0))
    SHARED_WITH_OBJECTIVE = ("betas", "seed")

    def objective(self, labelled: ImageSet) -> SemiSupervised:
        return SemiSupervised(labelled, **self.objective_options())


def labelled_subset(images: ImageSet, per_class: int, seed: int) -> ImageSet:
    """``per_class`` images of every class, drawn with ``seed`` (10 per class = the 100 labels of S Sec. 5.1)."""
    if images.y is None:
        raise ValueError(f"{images.name} has no labels")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in images.y.unique().tolist():
        idx = (images.y == c).nonzero().view(-1)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} images, fewer than {per_class}")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    index = torch.cat(chosen)
    return ImageSet(images.x[index], images.y[index], f"{images.name}[{per_class}/class, seed {seed}]")


@torch.no_grad()
def test_error(model: Any, test: ImageSet, batch_size: int = 500) -> dict[str, float]:
    """Errors of the classifier's argmax over the K logits on ``test``: count and percent."""
    assert test.y is not None
    backbone = model.backbone
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    predictions = torch.cat([backbone.logits(test.x[i:i + batch_size].to(device)).argmax(1).cpu()
                             for i in range(0, len(test), batch_size)])
    backbone.train(was_training)
    errors = int((predictions != test.y).sum())
    return {"errors": errors, "n": len(test), "error_percent": 100.0 * errors / len(test)}


class _TestErrorTrace:
    """Trainer callback: the test error (%) at every log line, added to the record (the learning curve)."""

    def __init__(self, test: ImageSet) -> None:
        self.test = test

    def __call__(self, trainer: Trainer, record: dict[str, Any]) -> None:
        record["test_error_percent"] = test_error(trainer.model, self.test)["error_percent"]


def train_ssl(config: SSLConfig, unlabelled: ImageSet, labelled: ImageSet, *, test: ImageSet | None = None,
              out_dir: str | Path | None = None, callbacks: Sequence[Callable] = ()) -> tuple[Trainer, dict[str, Any]]:
    """Trains one semi-supervised run in :class:`atebm.Trainer` (the unlabelled images are its data, the
    labelled ones its p_0 source) and returns the trainer and ``{"test": test_error(...), "seconds": ...}``."""
    from ..monitor import FailureMonitor

    extra = {"kind": "dsgan-ssl", "ssl": config.to_dict(), "size": int(unlabelled.x.shape[-1]),
             "channels": int(unlabelled.x.shape[1])}
    trace = [] if test is None else [_TestErrorTrace(test)]
    trainer = Trainer(config.train_config(), unlabelled, labelled, out_dir=out_dir,
                      callbacks=[FailureMonitor(), *trace, *callbacks], extra=extra,
                      objective=config.objective(labelled))
    start = time.perf_counter()
    trainer.fit()
    result: dict[str, Any] = {"seconds": time.perf_counter() - start, "iterations": trainer.step,
                              "stop": trainer.stop_reason}
    if test is not None:
        result["test"] = test_error(trainer.model, test)
    return trainer, result


def run_ssl_benchmark(out: str | Path, *, modes: Sequence[str] = SSL_MODES, seeds: Sequence[int] = (0, 1, 2),
                      dataset: str = "mnist", per_class: int = 10, overrides: dict[str, Any] | None = None,
                      device: str = "auto", log: Callable[[str], None] | None = print,
                      command: str | None = None) -> dict[str, Any]:
    """``atebm dsgan ssl``: every mode x seed on ``dataset`` (train split = unlabelled, ``per_class`` labels per
    class drawn with the seed, the test split for the error), mean +- std of the test error per mode, beside the
    paper's MNIST numbers. Writes ``out/ssl.json`` (after every run, so a stopped benchmark keeps its numbers),
    generator sample grids and a report section; returns the JSON content."""
    from ..io import save_grid

    out = Path(out)
    unlabelled = load_dataset(dataset, split="train")
    test = load_dataset(dataset, split="test")
    overrides = dict(overrides or {})
    runs: list[dict[str, Any]] = []
    done = _finished_runs(out / "ssl.json", dataset, per_class, overrides)
    summary: dict[str, Any] = {"dataset": dataset, "per_class": per_class, "unlabelled": len(unlabelled),
                               "test": len(test),
                               "labels": per_class * int(unlabelled.y.max() + 1) if unlabelled.y is not None else 0,
                               "seeds": list(seeds), "modes": list(modes), "overrides": overrides,
                               "command": command, "runs": runs}
    for mode in modes:
        for seed in seeds:
            if (mode, seed) in done:  # a stopped benchmark continues where it stopped
                runs.append(done[(mode, seed)])
                continue
            config = SSLConfig.from_dict({**SSLConfig().to_dict(), "progress": False, **overrides, "mode": mode,
                                          "seed": seed, "device": device})
            labelled = labelled_subset(unlabelled, per_class, seed)
            trainer, result = train_ssl(config, unlabelled, labelled, test=test)
            objective = trainer.objective
            assert isinstance(objective, SemiSupervised)
            if objective.generator is not None and seed == seeds[0]:
                with torch.no_grad():
                    samples = objective.generator.draw(100, torch.Generator().manual_seed(0),
                                                       batch=config.batch_size).cpu()
                save_grid(out / f"ssl_samples_{mode}.png", samples, nrow=10, scale=2)
            runs.append({"mode": mode, "seed": seed, **result, "last_log": trainer.history[-1]
                         if trainer.history else None,
                         "test_error_trace": [[r["step"], r.get("test_error_percent")] for r in trainer.history]})
            if log:
                log(f"ssl {mode} seed {seed}: test error {result['test']['error_percent']:.2f} % "
                    f"({result['test']['errors']}/{result['test']['n']}) in {result['seconds']:.0f} s")
            summary["results"] = _aggregate(runs)
            write_json(out / "ssl.json", summary)
    if dataset == "mnist":
        summary["paper_mnist_errors_of_10000"] = {k: {"mean": v[0], "std": v[1]} for k, v in PAPER_MNIST_ERRORS.items()}
    write_json(out / "ssl.json", summary)
    _report_ssl(out, summary)
    return summary


def _finished_runs(path: Path, dataset: str, per_class: int, overrides: dict[str, Any]) -> dict[tuple[str, int], Any]:
    """Runs already in ``path`` from a benchmark with the same data set, labels per class and overrides."""
    if not path.exists():
        return {}
    import json

    stored = json.loads(path.read_text())
    if (stored.get("dataset"), stored.get("per_class"), stored.get("overrides")) != (dataset, per_class, overrides):
        return {}
    return {(r["mode"], int(r["seed"])): r for r in stored.get("runs", [])}


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    result = {}
    for mode in dict.fromkeys(r["mode"] for r in runs):
        errors = np.array([r["test"]["error_percent"] for r in runs if r["mode"] == mode])
        result[mode] = {"n_runs": len(errors), "error_percent_mean": float(errors.mean()),
                        "error_percent_std": float(errors.std(ddof=1)) if len(errors) > 1 else 0.0,
                        "per_seed": errors.tolist()}
    return result


def _report_ssl(out: Path, summary: dict[str, Any]) -> None:
    from ..report import Report

    report = Report.open(out, title="DSGAN semi-supervised learning")
    rows = [[mode, r["n_runs"], r["error_percent_mean"], r["error_percent_std"]]
            for mode, r in summary.get("results", {}).items()]
    if summary["dataset"] == "mnist":
        rows += [[f"paper: {name}", 10, v[0] / 100, v[1] / 100] for name, v in PAPER_MNIST_ERRORS.items()]
    report.add_table("dsgan/ssl", f"Semi-supervised test error (%), {summary['dataset']}, {summary['labels']} labels",
                     ["method", "runs", "test error % (mean)", "std"], rows,
                     protocol={"unlabelled": summary["unlabelled"], "test images": summary["test"],
                               "seeds": summary["seeds"], "overrides": summary["overrides"],
                               "paper setting": "MNIST 60,000 unlabelled, 10,000 test images, 10 runs; its numbers "
                                                "(errors of 10,000) are shown as percent; S has no Fashion-MNIST "
                                                "result"})
    for mode in summary["modes"]:
        if (out / f"ssl_samples_{mode}.png").exists():
            report.add_image(f"dsgan/ssl-samples-{mode}", f"Generator samples ({mode})", f"ssl_samples_{mode}.png")
    report.save()
