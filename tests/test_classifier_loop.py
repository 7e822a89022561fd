"""The classifier loop (atebm.training.train_classifier): it keeps the best-validation weights among the periodic
and final candidates, trains on the adversary's examples, adds the extra loss, trains only the given parameters,
and is seeded without touching the global RNG."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from atebm.training import SelectBest, accuracy, train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Two Gaussian blobs in 2D, labels 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return torch.randn(n, 2, generator=g) * 0.7 + (y.float() * 2 - 1).view(-1, 1), y


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(2, 2)


class Scripted:
    """A validation metric returning hand-chosen values in call order; records the weights it judged."""

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)
        self.judged: list[dict[str, Tensor]] = []

    def __call__(self, model: nn.Module) -> float:
        self.judged.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return self.values[len(self.judged) - 1]


def same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_loop_keeps_the_best_validation_weights_and_the_final_ones_are_a_candidate():
    x, y = blobs(32, 0)
    metric = Scripted([0.2, 0.4, 0.9])                       # the final weights (step 5) validate best
    select = SelectBest(metric, by="val_accuracy", goal="max", every=2)
    run = train_classifier(linear(), x, y, iterations=5, batch_size=8, lr=0.1, select=select)
    assert [e["step"] for e in select.history] == [2, 4, 5]
    assert all("ce" in e for e in select.history)            # each candidate carries its last batch's loss
    assert select.best is not None and select.best.step == 5 and same(run.model.state_dict(), metric.judged[2])

    metric = Scripted([0.2, 0.9, 0.5])                       # now the middle candidate is the best
    select = SelectBest(metric, by="val_accuracy", goal="max", every=2)
    run = train_classifier(linear(), x, y, iterations=5, batch_size=8, lr=0.1, select=select)
    assert same(run.model.state_dict(), metric.judged[1]) and not same(metric.judged[1], metric.judged[2])
    assert not run.model.training


def test_selection_by_validation_accuracy_returns_the_most_accurate_candidate():
    x, y = blobs(64, 0)
    x_val, y_val = blobs(64, 1)
    select = SelectBest(lambda m: accuracy(m, x_val, y_val), by="val_accuracy", goal="max", every=1, ties="earlier")
    run = train_classifier(linear(), x, y, epochs=2, batch_size=16, lr=0.5, select=select)
    scores = [e["val_accuracy"] for e in select.history]
    assert len(scores) == 8 and len(set(scores)) > 1
    assert accuracy(run.model, x_val, y_val) == max(scores)
    assert select.best is not None and select.best.step == scores.index(max(scores)) + 1


def test_the_adversarial_hook_sees_every_batch_and_its_examples_are_trained_on():
    x, y = blobs(24, 0)
    calls: list[tuple[bool, int]] = []

    def adversary(model: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        calls.append((model.training, len(xb)))
        assert len(xb) == len(yb)
        return -xb                                           # "adversarial" examples: the mirrored points

    attacked = train_classifier(linear(), x, y, epochs=2, batch_size=8, lr=0.1, adversary=adversary).model
    assert calls == [(True, 8)] * 6
    # the same loop trained on the mirrored points directly gives the same weights: the adversary's output is
    # what the cross-entropy is taken on
    mirrored = train_classifier(linear(), x, y, epochs=2, batch_size=8, lr=0.1, augment=lambda xb: -xb).model
    clean = train_classifier(linear(), x, y, epochs=2, batch_size=8, lr=0.1).model
    assert same(attacked.state_dict(), mirrored.state_dict())
    assert not same(attacked.state_dict(), clean.state_dict())


def test_the_extra_loss_is_added_and_only_the_given_parameters_train():
    x, y = blobs(24, 0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2))
    body = {k: v.clone() for k, v in model[0].state_dict().items()}
    head = {k: v.clone() for k, v in model[2].state_dict().items()}

    def weight_penalty(net: nn.Module, xb: Tensor, yb: Tensor) -> tuple[Tensor, dict[str, float]]:
        term = net[2].weight.pow(2).sum()
        return 100.0 * term, {"penalty": float(term.detach())}

    run = train_classifier(model, x, y, iterations=20, batch_size=8, lr=0.05, parameters=model[2].parameters(),
                           extra_loss=weight_penalty)
    assert set(run.last) == {"ce", "penalty"}
    assert same(model[0].state_dict(), body) and all(p.grad is None for p in model[0].parameters())
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again after the loop
    assert not same(model[2].state_dict(), head)
    assert model[2].weight.abs().max() < head["weight"].abs().max()  # the penalty pulled the head towards 0


def test_the_loop_is_seeded_and_leaves_the_global_rng_alone():
    x, y = blobs(30, 0)
    model = linear()
    state = torch.random.get_rng_state()
    a = train_classifier(model, x, y, epochs=2, batch_size=8, lr=0.1, seed=3).model
    assert torch.equal(state, torch.random.get_rng_state())
    b = train_classifier(linear(), x, y, epochs=2, batch_size=8, lr=0.1, seed=3).model
    c = train_classifier(linear(), x, y, epochs=2, batch_size=8, lr=0.1, seed=4).model
    assert same(a.state_dict(), b.state_dict()) and not same(a.state_dict(), c.state_dict())


@pytest.mark.parametrize("drop_last,sizes", [(False, [4, 4, 2, 4, 4, 2]), (True, [4, 4, 4, 4, 4, 4])])
def test_batches_cover_each_permutation_with_or_without_the_incomplete_last_one(drop_last, sizes):
    x, y = blobs(10, 0)
    seen: list[Tensor] = []

    def record(xb: Tensor) -> Tensor:
        seen.append(xb)
        return xb

    run = train_classifier(linear(), x, y, iterations=6, batch_size=4, lr=0.1, augment=record, drop_last=drop_last)
    assert run.steps == 6 and [len(b) for b in seen] == sizes
    if not drop_last:  # an epoch is every image once
        assert sorted(map(tuple, torch.cat(seen[:3]).tolist())) == sorted(map(tuple, x.tolist()))


@pytest.mark.parametrize("options,message", [
    ({"epochs": 1, "iterations": 2}, "exactly one of epochs and iterations"),
    ({}, "exactly one of epochs and iterations"),
    ({"epochs": 1, "lr": 0.0}, "lr > 0"),
    ({"epochs": 1, "select": SelectBest(lambda m: 0.0, by="v", goal="max", every=lambda t: True)},
     "give SelectBest an integer every"),
])
def test_bad_settings_are_refused_naming_the_fix(options, message):
    x, y = blobs(8, 0)
    with pytest.raises(ValueError, match=message):
        train_classifier(linear(), x, y, **options)
