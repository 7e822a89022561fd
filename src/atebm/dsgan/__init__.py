"""DSGAN, the difference-seeking GAN (S; METHOD Sec. 5): a generator of ``p_g ~ (p_dbar - alpha p_d) / (1 - alpha)``.

* :mod:`~atebm.dsgan.training` - :class:`DSGAN`, the objective that plugs DSGAN (S Eq. 2, 10, Alg. 1) into
  :class:`atebm.Trainer` (the discriminator is the trainer's score model, the generator belongs to the objective);
  :class:`DSGANConfig` (its docstring names where the defaults depart from S Alg. 1: the non-saturating generator
  loss outside the case studies, the sampling trick), :class:`DSGANTrainer` (exact resume), :func:`load_generator`.
* :mod:`~atebm.dsgan.losses` - the discriminator and generator losses, the Eq. 10 batch composition, WGAN-GP.
* :mod:`~atebm.dsgan.sources` - p_dbar constructors: noise convolution (pixel or feature space), class supersets,
  convex combinations of two sources.
* :mod:`~atebm.dsgan.networks` - generators (2D / vectors, the S Tab. 4 image generator) and the S Tab. 4
  semi-supervised classifier (a score model: ``log sum_k exp l_k``).
* :mod:`~atebm.dsgan.toy` - 2D mixtures with exact densities, the exact target sampler and the 2D evaluation.
* :mod:`~atebm.dsgan.theory` - S Sec. 3 (Prop. 1-3, Thm. 1) checked numerically on exact 2D densities: the optimal
  discriminator, the minimiser of the virtual criterion, Alg. 1 in function space, energy distances of a trained
  generator to the exact targets.
* :mod:`~atebm.dsgan.cases` - the case studies of S Fig. 2-6 (``atebm dsgan train --case``), runs on any data
  (``--data``), and ``atebm dsgan sample``.
* :mod:`~atebm.dsgan.ssl` - semi-supervised learning with DSGAN complement samples (S Sec. 4.1, Tab. 1), the
  feature-matching GAN and the labels-only baselines (``atebm dsgan ssl``).
* :mod:`~atebm.dsgan.low_density_at` - adversarial training with DSGAN low-density samples in feature space (S Sec. 5.2,
  Eq. 9), evaluated with ART's FGSM, PGD and DeepFool (``atebm dsgan robust``).
"""
from .cases import (
                     CASES,
                     Case,
                     case_config,
                     evaluate_difference,
                     get_case,
                     parse_pbar,
                     sample_generator,
                     train_case,
                     train_on_data,
                     train_run,
)
from .losses import (
                     DISCRIMINATOR_LOSSES,
                     GENERATOR_LOSSES,
                     discriminator_loss,
                     fake_weights,
                     generator_loss,
                     gradient_penalty,
                     mixture_sizes,
)
from .low_density_at import RobustSettings, run_low_density_at
from .networks import GENERATORS, ConvGenerator, ImageGenerator, MLPGenerator, SSLClassifier, build_generator
from .sources import NOISE_KINDS, InterpolationSource, NoisySource, add_noise, class_subset, feature_space, interpolate
from .ssl import SSL_MODES, SemiSupervised, SSLConfig, labelled_subset, run_ssl_benchmark, test_error, train_ssl
from .theory import GridDensities, check_theory
from .toy import TOY_MIXTURES, BlurredMixture, evaluate_2d
from .training import DSGAN, DSGANConfig, DSGANTrainer, load_generator

__all__ = [
    "DSGAN", "DSGANConfig", "DSGANTrainer", "load_generator",
    "discriminator_loss", "generator_loss", "gradient_penalty", "mixture_sizes", "fake_weights",
    "DISCRIMINATOR_LOSSES", "GENERATOR_LOSSES",
    "NoisySource", "InterpolationSource", "add_noise", "interpolate", "class_subset", "feature_space", "NOISE_KINDS",
    "MLPGenerator", "ImageGenerator", "ConvGenerator", "SSLClassifier", "build_generator", "GENERATORS",
    "BlurredMixture", "TOY_MIXTURES", "evaluate_2d", "GridDensities", "check_theory",
    "Case", "CASES", "get_case", "case_config", "train_case", "train_on_data", "train_run", "sample_generator",
    "evaluate_difference", "parse_pbar",
    "RobustSettings", "run_low_density_at",
    "SemiSupervised", "SSLConfig", "SSL_MODES", "labelled_subset", "train_ssl", "run_ssl_benchmark", "test_error",
]
