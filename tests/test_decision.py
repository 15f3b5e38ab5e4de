"""HopSkipJump: labels only, every query an 8-bit image, counted per image, the distance
never growing with the budget, near the exact boundary of a linear model, reproducible."""

import math

import pytest
import torch
from conftest import NoGradient
from torch import nn

from adversarial.attacks.decision import KINDS, HopSkipJump, distance_after, model_decision


def linear_model(seed=0, classes=5, shape=(3, 4, 4)):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), classes))
    return net.eval().requires_grad_(False)


def images(n, shape=(3, 4, 4), seed=1, levels=(64, 192)):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(*levels, (n, *shape), generator=generator) / 255


class LabelsOnly:
    """decide(x) -> top classes, as integers: the scores stay inside. Keeps every batch."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def __call__(self, x):
        self.batches.append(x.clone())
        return self.model(NoGradient.apply(x)).argmax(1)


def exact_l2(model, x, labels):
    """(N,) the L2 distance from each image to the nearest other class's region of a linear
    model (on floats, pixels unbounded): min over j of the margin over ||w_label - w_j||."""
    weight, logits = model[1].weight, model(x)
    distances = []
    for i, label in enumerate(labels.tolist()):
        margins = (logits[i, label] - logits[i]) / (weight[label] - weight).norm(dim=1)
        margins[label] = math.inf
        distances.append(margins.min().item())
    return torch.tensor(distances)


def test_only_labels_are_read_every_query_is_on_the_grid_and_every_one_is_counted():
    model, x = linear_model(), images(3)
    labels = model(x).argmax(1)
    decide = LabelsOnly(model)
    result = HopSkipJump(decide, queries=250, batch=40)(x, labels)
    assert all(batch.dtype == torch.float32 for batch in decide.batches)
    for batch in [*decide.batches, result.adversarial]:
        levels = batch * 255
        assert torch.allclose(levels, levels.round(), atol=1e-4)  # on the 8-bit grid
        assert batch.min() >= 0 and batch.max() <= 1
    # Images are attacked one after another: what the model saw, image by image.
    seen = torch.cat(decide.batches)
    assert len(seen) == int(result.queries.sum()) == 3 * 250
    for i in range(3):
        assert sum(result.by_kind[i].values()) == int(result.queries[i])
        assert set(result.by_kind[i]) == set(KINDS) and result.by_kind[i]["gradient samples"]
    # Independently: what it returns fools the model, at the distance its trace says.
    assert result.success.all()
    assert (model(result.adversarial).argmax(1) != labels).all()
    found = (result.adversarial - x).flatten(1).norm(dim=1)
    assert torch.allclose(found, torch.tensor([t[-1][1] for t in result.trace]))


def test_the_distance_never_grows_with_the_budget_and_a_run_is_the_start_of_a_longer_one():
    model, x = linear_model(), images(2)
    labels = model(x).argmax(1)
    budgets = (30, 120, 400)
    runs = [HopSkipJump(model_decision(model), b, seed=3)(x, labels) for b in budgets]
    distances = [(run.adversarial - x).flatten(1).norm(dim=1) for run in runs]
    assert (distances[1] <= distances[0]).all() and (distances[2] <= distances[1]).all()
    assert (distances[2] < distances[0]).all()  # and the queries buy something
    longest = runs[-1].trace  # what the longest run had reached within each budget
    for budget, run, found in zip(budgets, runs, distances, strict=True):
        for i in range(2):
            assert distance_after(longest[i], budget) == pytest.approx(float(found[i]))
            assert run.trace[i] == [step for step in longest[i] if step[0] <= budget]


def test_on_a_linear_model_it_comes_near_the_exact_distance_to_the_boundary():
    model, x = linear_model(), images(4)
    labels = model(x).argmax(1)
    exact = exact_l2(model, x, labels)
    result = HopSkipJump(model_decision(model), 1500)(x, labels)
    found = (result.adversarial - x).flatten(1).norm(dim=1)
    assert (model(result.adversarial).argmax(1) != labels).all()
    # The grid adds at most half a level per channel to the float minimum: sqrt(48) / 510.
    assert (found >= exact - 1e-6).all()
    assert (found <= 1.5 * exact + math.sqrt(48) / 510).all(), (found, exact)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_a_targeted_run_ends_in_the_target_from_its_start(norm):
    model, x = linear_model(), images(20, levels=(0, 256))
    seen = model(x).argmax(1)
    start = int((seen != seen[0]).nonzero()[0, 0])  # an image of another class than the first
    target = seen[start : start + 1]
    result = HopSkipJump(model_decision(model), 200, norm, targeted=True)(
        x[:1], target, x[start : start + 1]
    )
    assert result.success.all()
    assert torch.equal(model(result.adversarial).argmax(1), target)
    order = math.inf if norm == "linf" else 2
    size = torch.linalg.vector_norm(result.adversarial - x[:1], order)
    assert size < torch.linalg.vector_norm(x[start] - x[0], order)  # it came closer


def test_a_seeded_run_is_reproducible_and_another_seed_differs():
    model, x = linear_model(), images(2)
    labels = model(x).argmax(1)
    runs = [HopSkipJump(model_decision(model), 150, seed=s)(x, labels) for s in (7, 7, 8)]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert runs[0].trace == runs[1].trace
    assert not torch.equal(runs[0].adversarial, runs[2].adversarial)


def test_a_start_that_is_not_adversarial_costs_one_query_and_finds_nothing():
    model, x = linear_model(), images(1)
    other = (model(x).argmax(1) + 1) % 5
    result = HopSkipJump(model_decision(model), 100, targeted=True)(x, other, x)
    assert not result.success[0] and int(result.queries[0]) == 1
    assert torch.equal(result.adversarial, x)
    with pytest.raises(ValueError, match="target class"):
        HopSkipJump(model_decision(model), 10, targeted=True)(x, other)
