"""Applications (atebm.apps): restoration, translation, interpolation, composition, trajectories, nearest-neighbour
inpainting, and the checks every entry point makes on its images.

Restoration quality is checked with a score whose data distribution is known: a Gaussian mixture on a few
fixed MNIST digits, ``f(x) = logsumexp_k(-||x - t_k||² / 2τ²)``. Ascending it moves an image toward its nearest
template, so a working denoiser/inpainter must bring a corrupted template closer to the clean one.
"""
import inspect
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from atebm import build_score_model, pgd
from atebm.apps import (
    WeightedSum,
    add_gaussian_noise,
    add_salt_pepper,
    box_mask,
    center_mask,
    compose,
    compose_trajectory,
    conform,
    corrupt,
    denoise,
    denoise_trajectory,
    generate,
    generate_trajectory,
    inpaint,
    inpaint_trajectory,
    interpolate,
    interpolate_trajectory,
    interpolation_seeds,
    load_mask,
    make_mask,
    masked_nearest,
    model_size,
    nn_image_inpaint,
    nn_patch_inpaint,
    occlude,
    parse_steps,
    pixel_mask,
    save_trajectory,
    summarize,
    translate,
    translate_trajectory,
)
from atebm.data import blur
from atebm.metrics import ssim
from atebm.sampling import PGDTrace

pytestmark = pytest.mark.usefixtures("one_thread")


class TemplateMixture(nn.Module):
    """Log-density (up to a constant) of an isotropic Gaussian mixture centred on ``templates``."""

    def __init__(self, templates: torch.Tensor, tau: float = 1.0):
        super().__init__()
        self.register_buffer("templates", templates.clone())
        self.tau = tau

    def forward(self, x):
        d2 = (x.flatten(1)[:, None, :] - self.templates.flatten(1)[None]).pow(2).sum(-1)
        return torch.logsumexp(-d2 / (2 * self.tau ** 2), dim=1)


def tiny_convnet(seed=0, channels=1, width=4):
    torch.manual_seed(seed)
    return build_score_model({"arch": "convnet", "kwargs": {"in_channels": channels, "width": width},
                              "mean": 0.5, "std": 0.5})


@pytest.fixture(scope="module")
def digits():
    """Eight fixed MNIST digits (val split), 28x28 grey."""
    from atebm.data import load_dataset

    return load_dataset("mnist", split="val", n=8, seed=3).x


# ------------------------------------------------------------------------------------------------- noise
def test_gaussian_noise_is_seeded_clipped_and_has_the_requested_std():
    x = torch.full((4, 1, 32, 32), 0.5)
    a, b = add_gaussian_noise(x, 0.1, seed=7), add_gaussian_noise(x, 0.1, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, add_gaussian_noise(x, 0.1, seed=8))
    assert abs(float((a - x).std()) - 0.1) < 0.005  # 0.5 ± 5σ never clips
    assert add_gaussian_noise(x, 2.0, seed=0).min() >= 0 and add_gaussian_noise(x, 2.0, seed=0).max() <= 1
    with pytest.raises(ValueError):
        add_gaussian_noise(x, -0.1)


def test_salt_and_pepper_hits_the_requested_fraction_with_black_and_white_only():
    x = torch.full((8, 3, 32, 32), 0.5)
    y = add_salt_pepper(x, 0.2, seed=1)
    changed = (y != x).any(dim=1)  # a hit replaces all channels of a pixel position
    assert abs(float(changed.float().mean()) - 0.2) < 0.02
    values = y.permute(1, 0, 2, 3)[:, changed]
    assert set(values.unique().tolist()) <= {0.0, 1.0}
    assert (values == values[0]).all()  # same value in every channel
    assert torch.equal(corrupt(x, "salt-pepper", 0.2, seed=1), y)
    with pytest.raises(ValueError, match="unknown noise model"):
        corrupt(x, "speckle", 0.1)


# ------------------------------------------------------------------------------------------------- denoise
def test_denoising_raises_mean_ssim_and_respects_the_eps_ball(digits):
    model = TemplateMixture(digits)
    noisy = add_gaussian_noise(digits, 0.3, seed=0)
    before = ssim(noisy, digits).mean()
    restored = denoise(model, noisy, steps=12, step_size=0.5)
    after = ssim(restored, digits).mean()
    assert after > before + 0.2, (float(before), float(after))
    assert torch.equal(denoise(model, noisy, steps=0, step_size=0.5), noisy)  # strength 0 = identity
    bounded = denoise(model, noisy, steps=12, step_size=0.5, eps=1.0)
    assert ((bounded - noisy).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all()
    assert ssim(bounded, digits).mean() > before  # fewer changes, still an improvement


def test_denoise_records_a_trajectory_that_starts_at_the_input(digits):
    model = TemplateMixture(digits)
    noisy = add_salt_pepper(digits, 0.1, seed=0)
    out, path = denoise_trajectory(model, noisy, steps=4, step_size=0.5, record=[0, 2, 4])
    assert path.shape == (3, *noisy.shape)
    assert torch.equal(path[0], noisy) and torch.equal(path[-1], out)


# ------------------------------------------------------------------------------------------------- masks
def test_mask_builders_have_the_stated_geometry(tmp_path):
    shape = (5, 1, 20, 20)
    c = center_mask(shape, 0.5)
    assert c.shape == (5, 1, 20, 20) and c.dtype == torch.bool
    assert int(c[0].sum()) == 100 and bool(c[0, 0, 5:15, 5:15].all())
    b = box_mask(shape, count=2, min_size=0.2, max_size=0.3, seed=1)
    assert torch.equal(b, box_mask(shape, count=2, min_size=0.2, max_size=0.3, seed=1))
    for m in b:
        assert 16 <= int(m.sum()) <= 2 * 36  # each box 4..6 px a side
    p = pixel_mask((50, 1, 20, 20), 0.3, seed=0)
    assert abs(float(p.float().mean()) - 0.3) < 0.02
    with pytest.raises(ValueError):
        center_mask(shape, 0.0)
    with pytest.raises(ValueError):
        box_mask(shape, min_size=0.5, max_size=0.2)


def test_user_mask_from_png_and_npy(tmp_path):
    hole = np.zeros((12, 10), dtype=np.uint8)
    hole[2:5, 3:7] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    m = load_mask(tmp_path / "mask.png", (3, 1, 12, 10))
    assert m.shape == (3, 1, 12, 10) and int(m[2].sum()) == 12 and bool(m[:, 0, 2:5, 3:7].all())
    stack = np.zeros((3, 12, 10), dtype=np.float32)
    stack[1, 0, 0] = 1.0
    np.save(tmp_path / "mask.npy", stack)
    m2 = make_mask("file", (3, 1, 12, 10), path=tmp_path / "mask.npy")
    assert int(m2.sum()) == 1 and bool(m2[1, 0, 0, 0])
    np.savez(tmp_path / "mask.npz", mask=(stack * 255).astype(np.uint8))
    assert torch.equal(load_mask(tmp_path / "mask.npz", (3, 1, 12, 10)), m2)
    with pytest.raises(ValueError, match="expected"):
        load_mask(tmp_path / "mask.png", (3, 1, 12, 12))
    with pytest.raises(FileNotFoundError):
        load_mask(tmp_path / "missing.png", (3, 1, 12, 10))


@pytest.mark.parametrize("fill", [0.0, 0.7, "noise", "mean"])
def test_occlude_changes_only_the_hole(fill):
    x = torch.rand(3, 2, 10, 10)
    mask = center_mask(x.shape, 0.4)
    y = occlude(x, mask, fill, seed=0)
    keep = ~mask.expand_as(x)
    assert torch.equal(y[keep], x[keep])
    if fill == "mean":
        visible_mean = (x * keep).sum(dim=(2, 3)) / keep.sum(dim=(2, 3))
        assert torch.allclose(y[:, :, 5, 5], visible_mean)
    elif fill != "noise":
        assert bool((y[~keep] == fill).all())


# ------------------------------------------------------------------------------------------------- inpaint
@pytest.mark.parametrize("kind", ["center", "boxes", "pixels"])
def test_inpainting_keeps_every_visible_pixel_bit_identical(kind):
    model = tiny_convnet()
    x = torch.rand(6, 1, 16, 16)
    x[:, :, ::3] = 1.0  # many pixels on the box edge, where a step would be clamped
    mask = make_mask(kind, x.shape, seed=2)
    start = occlude(x, mask, "noise", seed=3)
    out, path = inpaint_trajectory(model, start, mask, steps=5, step_size=0.5, record=[0, 5])
    visible = ~mask.expand_as(x)
    assert torch.equal(out[visible], start[visible])
    assert torch.equal(path[0], start)
    assert not torch.equal(out[~visible], start[~visible])  # the hole did move


def test_inpainting_restores_the_hole_toward_the_truth(digits):
    model = TemplateMixture(digits)
    mask = center_mask(digits.shape, 0.5)
    occluded = occlude(digits, mask, 0.0)
    restored = inpaint(model, occluded, mask, steps=20, step_size=0.5)
    assert ssim(restored, digits).mean() > ssim(occluded, digits).mean() + 0.1
    err_before = (occluded - digits).flatten(1).norm(dim=1)
    err_after = (restored - digits).flatten(1).norm(dim=1)
    assert (err_after < err_before).all()


# ------------------------------------------------------------------------------------------------- baselines
def test_masked_nearest_neighbours_match_brute_force():
    from atebm.metrics import nearest_neighbours

    g = torch.Generator().manual_seed(1)
    bank, query = torch.rand(30, 3, 5, 5, generator=g), torch.rand(6, 3, 5, 5, generator=g)
    mask = pixel_mask(query.shape, 0.5, seed=2)  # (N, 1, H, W): broadcast over the channels
    dist, idx = nearest_neighbours(query, bank, k=3, chunk=4, mask=mask)
    m = mask.expand_as(query).float()
    brute = (((query[:, None] - bank[None]) ** 2) * m[:, None]).flatten(2).sum(-1)
    best, order = brute.sort(dim=1)
    assert torch.equal(idx, order[:, :3])
    torch.testing.assert_close(dist, best[:, :3].sqrt(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        nearest_neighbours(query, bank, mask=torch.ones(2, 2))


def test_masked_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    bank, query = torch.rand(40, 1, 6, 6, generator=g), torch.rand(7, 1, 6, 6, generator=g)
    mask = pixel_mask(query.shape, 0.4, seed=1)
    got = masked_nearest(query, bank, mask, block=3)
    m = mask.float()
    brute = (((query[:, None] - bank[None]) ** 2) * m[:, None]).flatten(2).sum(-1).argmin(1)
    assert torch.equal(got, brute)
    assert torch.equal(masked_nearest(query, bank), ((query[:, None] - bank[None]) ** 2).flatten(2).sum(-1).argmin(1))


def test_nearest_neighbour_baselines_recover_an_image_that_is_in_the_bank(digits):
    bank = torch.cat([torch.rand(20, 1, 28, 28), digits])
    mask = center_mask(digits.shape, 0.5)
    occluded = occlude(digits, mask, 0.0)
    assert torch.equal(nn_patch_inpaint(digits, mask, bank, occluded), digits)
    assert torch.equal(nn_image_inpaint(digits, mask, bank, "original"), digits)
    assert torch.equal(nn_image_inpaint(occluded, mask, bank, "visible"), digits)
    # the patch baseline only writes into the hole
    other = torch.rand(30, 1, 28, 28)
    patched = nn_patch_inpaint(digits, mask, other, occluded)
    assert torch.equal(patched[~mask.expand_as(digits)], digits[~mask.expand_as(digits)])


# ------------------------------------------------------------------------------------------------- generate
def test_generate_is_pgd_from_the_blurred_seeds():
    model = tiny_convnet()
    seeds = torch.rand(4, 1, 16, 16)
    assert torch.equal(generate(model, seeds, 3, 0.5), pgd(model, seeds, steps=3, step_size=0.5))
    out, path = generate_trajectory(model, seeds, 3, 0.5, blur_sigma=1.5, record=[0, 3])
    assert torch.equal(path[0], blur(seeds, 1.5).clamp(0, 1))
    assert torch.equal(out, pgd(model, blur(seeds, 1.5), steps=3, step_size=0.5))


# ------------------------------------------------------------------------------------------------- translate
def test_translate_converts_the_domain_and_raises_the_target_score(digits):
    model = TemplateMixture(digits)
    faces_rgb = torch.rand(5, 3, 32, 32)
    out, path = translate_trajectory(model, faces_rgb, steps=10, step_size=1.0, channels=1, size=28,
                                     record=[0, 5, 10])
    assert out.shape == (5, 1, 28, 28)
    assert torch.equal(path[0], conform(faces_rgb, 1, 28))
    scores = torch.stack([model(p) for p in path])
    assert (scores[1:] > scores[:-1]).all()
    # denoise's options reach the ascent: the eps-ball around the converted source bounds the change
    bounded = translate(model, faces_rgb, steps=10, step_size=1.0, channels=1, size=28, eps=0.5, norm="l2")
    change = (bounded - path[0]).flatten(1).norm(dim=1)
    assert (change <= 0.5 + 1e-5).all() and (change > 0.4).all()


def test_conform_refuses_unknown_channel_changes():
    with pytest.raises(ValueError, match="channels"):
        conform(torch.rand(2, 2, 8, 8), 3)
    assert conform(torch.rand(2, 1, 8, 8), 3, 4).shape == (2, 3, 4, 4)


# ------------------------------------------------------------------------------------------------- interpolate
def test_interpolation_endpoints_are_the_endpoints_own_samples():
    model = tiny_convnet(seed=1)
    a, b = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    seeds = interpolation_seeds(a, b, 5)
    assert torch.equal(seeds[:, 0], a) and torch.equal(seeds[:, -1], b)
    assert torch.allclose(seeds[:, 2], 0.5 * (a + b))
    samples, path = interpolate_trajectory(model, a, b, 5, steps=4, step_size=0.5, blur_sigma=0.5, record=[0, 4])
    assert samples.shape == (3, 5, 1, 16, 16) and path.shape == (2, 3, 5, 1, 16, 16)
    assert torch.equal(interpolate(model, a, b, 5, steps=4, step_size=0.5, blur_sigma=0.5), samples)
    blurred = blur(seeds.reshape(-1, 1, 16, 16), 0.5).clamp(0, 1).reshape(seeds.shape)
    torch.testing.assert_close(path[0], blurred, rtol=0, atol=1e-6)
    torch.testing.assert_close(samples[:, 0], generate(model, a, 4, 0.5, 0.5), rtol=0, atol=1e-6)
    torch.testing.assert_close(samples[:, -1], generate(model, b, 4, 0.5, 0.5), rtol=0, atol=1e-6)
    assert not torch.allclose(samples[:, 2], samples[:, 0])
    with pytest.raises(ValueError):
        interpolation_seeds(a, b, 1)


# ------------------------------------------------------------------------------------------------- compose
def test_composition_with_a_zero_weight_is_the_single_model():
    m1, m2 = tiny_convnet(seed=1), tiny_convnet(seed=2)
    seeds = torch.rand(5, 1, 16, 16)
    alone = generate(m1, seeds, 4, 0.5)
    assert torch.equal(compose([m1, m2], seeds, 4, 0.5, weights=[1.0, 0.0]), alone)
    assert not torch.equal(compose([m1, m2], seeds, 4, 0.5, weights=[1.0, 1.0]), alone)


def test_weighted_sum_is_the_weighted_sum_of_scores_and_log_probs():
    m1, m2 = tiny_convnet(seed=1), tiny_convnet(seed=2)
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        s1, s2 = m1(x), m2(x)
        assert torch.allclose(WeightedSum([m1, m2], [2.0, -0.5])(x), 2.0 * s1 - 0.5 * s2)
        expected = torch.nn.functional.logsigmoid(s1) + 3 * torch.nn.functional.logsigmoid(s2)
        assert torch.allclose(WeightedSum([m1, m2], [1, 3], mode="log_prob")(x), expected)
        assert torch.allclose(WeightedSum([lambda t: t.flatten(1).sum(1)])(x), x.flatten(1).sum(1))
    ws = WeightedSum([m1, m2])
    ws.train()
    pgd(ws, x, steps=1, step_size=0.1)
    assert ws.training and m1.training  # the sampler restored the modes it switched
    with pytest.raises(ValueError):
        WeightedSum([m1, m2], [1.0])
    with pytest.raises(ValueError):
        WeightedSum([])


# ------------------------------------------------------------------------------------------------- trajectory
def test_parse_steps():
    assert parse_steps("0, 5,2", 10) == [0, 2, 5]
    assert parse_steps("all", 3) == [0, 1, 2, 3]
    assert parse_steps("every:4", 10) == [0, 4, 8, 10]
    for bad in ("0,11", "every:0", "x", ""):
        with pytest.raises(ValueError):
            parse_steps(bad, 10)


def test_save_trajectory_writes_strip_gif_and_npz(tmp_path):
    path = torch.rand(4, 6, 1, 8, 8)
    files = save_trajectory(tmp_path, "demo", path, [0, 1, 2, 3], max_samples=5, scale=1)
    with Image.open(files["gif"]) as gif:
        assert gif.n_frames == 4
    with Image.open(files["png"]) as strip:  # 5 rows x 4 columns of 8x8 images with 2 px padding
        assert strip.size == (4 * 10 + 2, 5 * 10 + 2)
    with np.load(files["npz"]) as saved:
        assert saved["x"].shape == (24, 1, 8, 8) and saved["steps"].tolist() == [0, 1, 2, 3]
        np.testing.assert_allclose(saved["x"][6:12], path[1].numpy(), atol=1e-7)
    with pytest.raises(ValueError):
        save_trajectory(tmp_path, "bad", path, [0, 1])


def test_summarize_reports_quartiles_and_skips_infinite_values():
    s = summarize(np.array([1.0, 2.0, 3.0, 4.0, 5.0, math.inf]))
    assert s["n"] == 6 and s["non_finite"] == 1 and s["mean"] == 3.0 and s["median"] == 3.0
    assert s["q1"] == 2.0 and s["q3"] == 4.0 and s["min"] == 1.0 and s["max"] == 5.0


# ------------------------------------------------------------------------------------------------- one result scheme
def _apps(model, x):
    """(name, plain call, trajectory call) for every application, on the same images."""
    mask = center_mask(x.shape, 0.5)
    half = x.shape[0] // 2
    return [
        ("generate", lambda **k: generate(model, x, 3, 0.5, **k),
         lambda **k: generate_trajectory(model, x, 3, 0.5, **k)),
        ("denoise", lambda **k: denoise(model, x, 3, 0.5, eps=1.0, **k),
         lambda **k: denoise_trajectory(model, x, 3, 0.5, eps=1.0, **k)),
        ("inpaint", lambda **k: inpaint(model, x, mask, 3, 0.5, **k),
         lambda **k: inpaint_trajectory(model, x, mask, 3, 0.5, **k)),
        ("translate", lambda **k: translate(model, x, 3, 0.5, **k),
         lambda **k: translate_trajectory(model, x, 3, 0.5, **k)),
        ("interpolate", lambda **k: interpolate(model, x[:half], x[half:2 * half], 3, 3, 0.5, **k),
         lambda **k: interpolate_trajectory(model, x[:half], x[half:2 * half], 3, 3, 0.5, **k)),
        ("compose", lambda **k: compose([model, model], x, 3, 0.5, [0.5, 0.5], **k),
         lambda **k: compose_trajectory([model, model], x, 3, 0.5, [0.5, 0.5], **k)),
    ]


def test_every_application_returns_a_tensor_and_its_trajectory_twin_the_same_result_and_path():
    model, x = tiny_convnet(seed=3), torch.rand(4, 1, 12, 12)
    for name, plain, with_path in _apps(model, x):
        result = plain()
        assert isinstance(result, torch.Tensor), name
        again, path = with_path(record=[0, 1, 3])
        assert isinstance(again, torch.Tensor) and isinstance(path, torch.Tensor), name
        torch.testing.assert_close(again, result, rtol=0, atol=1e-6, msg=name)
        assert path.shape == (3, *result.shape), name
        torch.testing.assert_close(path[-1], result, rtol=0, atol=1e-6, msg=name)
        assert not torch.equal(path[1], path[0]), name  # the path moves
        with pytest.raises(TypeError):
            plain(record=[0, 3])  # no argument changes what a plain application returns


def test_an_application_given_a_trace_records_the_path_its_twin_returns():
    model, x = tiny_convnet(seed=4), torch.rand(4, 1, 12, 12)
    for name, plain, with_path in _apps(model, x):
        trace = PGDTrace(record=[0, 2, 3])
        result = plain(trace=trace)
        again, path = with_path(record=[0, 2, 3])
        assert trace.path is not None and trace.path.shape == (3, *result.shape), name
        torch.testing.assert_close(trace.path, path, rtol=0, atol=1e-6, msg=name)
        torch.testing.assert_close(again, result, rtol=0, atol=1e-6, msg=name)


def test_trajectory_twins_show_their_applications_arguments_plus_record():
    def parameters(function):
        return list(inspect.signature(function).parameters)

    assert parameters(denoise_trajectory) == ["model", "x", "steps", "step_size", "record", "eps", "norm"]
    assert parameters(translate_trajectory) == ["model", "x", "steps", "step_size", "record", "channels", "size",
                                                "denoise_options"]
    assert parameters(interpolate_trajectory) == ["model", "a", "b", "num", "steps", "step_size", "blur_sigma",
                                                  "record", "generate_options"]
    assert translate_trajectory.__name__ == "translate_trajectory"
    assert translate_trajectory.__module__ == "atebm.apps.translate"
    assert ":func:`translate`" in (translate_trajectory.__doc__ or "")


def _bad_images():
    good = torch.rand(2, 1, 8, 8)
    nan, inf = good.clone(), good.clone()
    nan[0, 0, 1, 1] = float("nan")
    inf[1, 0, 2, 2] = float("inf")
    return [(nan, ValueError, "NaN"), (inf, ValueError, "inf"), (good * 3 - 1, ValueError, r"\[0, 1\]"),
            (good[0], ValueError, "NCHW"), (torch.zeros(0, 1, 8, 8), ValueError, "empty"),
            ((good * 255).to(torch.uint8), TypeError, "floating-point"), (good.tolist(), TypeError, "Tensor")]


@pytest.mark.parametrize("bad, error, message", _bad_images(), ids=["nan", "inf", "range", "shape", "empty",
                                                                     "dtype", "list"])
def test_every_application_refuses_bad_images_with_a_message_naming_the_problem(bad, error, message):
    model = tiny_convnet()
    mask = center_mask((2, 1, 8, 8), 0.5)
    calls = [lambda: generate(model, bad, 1, 0.5), lambda: denoise(model, bad, 1, 0.5),
             lambda: inpaint(model, bad, mask, 1, 0.5), lambda: translate(model, bad, 1, 0.5),
             lambda: interpolate(model, bad, bad, 3, 1, 0.5), lambda: compose([model], bad, 1, 0.5),
             lambda: generate_trajectory(model, bad, 1, 0.5, record=[0, 1]), lambda: conform(bad, 3),
             lambda: masked_nearest(bad, torch.rand(5, 1, 8, 8))]
    for call in calls:
        with pytest.raises(error, match=message):
            call()


def test_translate_converts_to_the_format_the_model_records():
    model = tiny_convnet(channels=3)
    model.meta = {"size": 12, "channels": 3}
    grey = torch.rand(3, 1, 20, 20)
    assert translate(model, grey, 2, 0.5).shape == (3, 3, 12, 12)
    other = tiny_convnet(channels=3)
    other.meta = {"size": 16, "channels": 3}
    assert model_size(WeightedSum([model, model])) == (12, 12)
    with pytest.raises(ValueError, match="disagree on their input size"):
        model_size(WeightedSum([model, other]))
