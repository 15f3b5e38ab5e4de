"""Minimal perturbations: DeepFool against the analytic answer of a linear model, CW's search
never calling a miss a success, the PNG check that catches a boundary example rounding
undoes, the greedy L0 attack's budget, images already misclassified, and the sizes."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from adversarial.attacks import quantize
from adversarial.attacks.minimal import (
    CarliniWagnerL2,
    DeepFool,
    GreedyPixels,
    fools,
    sizes,
)
from adversarial.how_small import rounding_table


def linear_model(seed=0, classes=5, scale=1.0):
    """logits = W x + b on 3x4x4 images: every boundary is a hyperplane."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, classes))
    with torch.no_grad():
        model[1].weight.mul_(scale)
    return model.requires_grad_(False)


def interior_images(n=6, seed=1):
    """Images on the 8-bit grid near mid-grey, far from 0 and 1 (no clipping)."""
    generator = torch.Generator().manual_seed(seed)
    return quantize(0.5 + 0.05 * torch.rand(n, 3, 4, 4, generator=generator))


def nearest_hyperplane(model, x, norm):
    """Per image: the distance to the nearest boundary of its class, in the dual norm's
    terms: min over k of |f_k - f_y| / ||w_k - w_y||_q (q = 2 for L2, 1 for L-inf)."""
    weight, bias = model[1].weight, model[1].bias
    logits = x.flatten(1) @ weight.T + bias
    y = logits.argmax(1)
    distances = []
    for i in range(len(x)):
        gaps = [
            (logits[i, k] - logits[i, y[i]]).abs() / (weight[k] - weight[y[i]]).norm(p=norm)
            for k in range(weight.shape[0])
            if k != y[i]
        ]
        distances.append(min(gaps))
    return torch.stack(distances), y


@pytest.mark.parametrize("norm, dual", [(2, 2), (math.inf, 1)])
def test_deepfool_on_a_linear_model_lands_on_the_nearest_hyperplane(norm, dual):
    model, x = linear_model(), interior_images()
    distance, y = nearest_hyperplane(model, x, dual)
    result = DeepFool(model, norm=norm, overshoot=0.02, candidates=4)(x, y)
    assert result.success.all() and not result.already.any()
    size = sizes(x, result.adversarial)
    found = size.l2 if norm == 2 else size.linf
    # One step reaches the hyperplane exactly (the model is its own linearisation); the
    # paper's overshoot and the authors' 1e-4 carry it past.
    assert torch.allclose(found, 1.02 * (distance + 1e-4), rtol=1e-3)
    assert (result.gradients == 5).all()  # one step: the label's gradient and 4 others'
    assert (model(result.adversarial).argmax(1) != y).all()


def test_carlini_wagner_never_reports_a_miss_as_a_success():
    model = linear_model(scale=3.0)
    generator = torch.Generator().manual_seed(2)
    x = quantize(0.3 + 0.4 * torch.rand(12, 3, 4, 4, generator=generator))  # various distances
    y = model(x).argmax(1)
    # Too few steps for some images: the search must say so, not return them as found.
    result = CarliniWagnerL2(model, searches=2, steps=15, initial_c=1.0)(x, y)
    predicted = model(result.adversarial).argmax(1)
    assert (predicted[result.success] != y[result.success]).all()
    assert torch.equal(result.adversarial[~result.success], x[~result.success])
    assert 0 < result.success.sum() < len(x)  # some found, some not: both paths seen
    # With the default search, every image is found, at the nearest hyperplane's distance.
    result = CarliniWagnerL2(model, steps=200)(x, y)
    assert result.success.all() and (model(result.adversarial).argmax(1) != y).all()
    distance, _ = nearest_hyperplane(model, x, 2)
    l2 = sizes(x, result.adversarial).l2
    assert (l2 >= distance * (1 - 1e-4)).all() and (l2 <= 1.01 * distance).all()


def test_carlini_wagner_tells_on_step_of_every_adam_step():
    model = linear_model(scale=3.0)
    x = quantize(torch.full((2, 3, 4, 4), 0.5))
    y = model(x).argmax(1)
    seen = []
    CarliniWagnerL2(model, searches=3, steps=4, on_step=lambda *step: seen.append(step))(x, y)
    assert [step for step, _, _ in seen] == list(range(1, 13))  # 3 searches of 4 steps
    assert all(loss.shape == (2,) and predicted.shape == (2,) for _, loss, predicted in seen)


def boundary_case(distance=0.2 / 255):
    """A linear model and an image whose nearest boundary is `distance` away (in L2): the
    runner-up class's bias moved until it is."""
    model, x = linear_model(), interior_images(n=1)
    weight, bias = model[1].weight, model[1].bias
    logits = model(x)[0]
    y = int(logits.argmax())
    norms = (weight - weight[y]).norm(dim=1)
    k = min(
        (c for c in range(len(logits)) if c != y), key=lambda c: (logits[y] - logits[c]) / norms[c]
    )
    with torch.no_grad():
        bias[k] += logits[y] - logits[k] - distance * norms[k]
    return model, x, torch.tensor([y])


def test_the_png_check_catches_a_boundary_example_that_rounding_undoes(capsys):
    model, x, y = boundary_case()
    distance, _ = nearest_hyperplane(model, x, 2)
    assert distance.item() == pytest.approx(0.2 / 255, rel=1e-3)  # a fifth of a level
    floats = DeepFool(model)(x, y)
    assert floats.success.all()
    assert (model(floats.adversarial).argmax(1) != y).all()  # fooled, as floats
    assert (model(quantize(floats.adversarial)).argmax(1) == y).all()  # not once saved
    # On the grid, the attack goes on until the rounded image fools.
    saved = DeepFool(model, grid=True)(x, y)
    assert torch.equal(saved.adversarial, quantize(saved.adversarial))
    assert saved.success.all() and (model(saved.adversarial).argmax(1) != y).all()
    # And the step's table says so: fools as floats, its PNG does not.
    rounding_table(model, x, y, False, {"DeepFool L2": runs_of(floats, 1)})
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[-3:-1] == ["yes", "no"], row


def runs_of(result, n):
    """The first n images of a MinimalResult, as how_small's Run."""
    from adversarial.how_small import Run

    return Run(result.adversarial[:n], result.already[:n], result.gradients[:n], 0.0)


def test_greedy_pixels_changes_whole_pixels_to_0_or_1_within_its_budget():
    model, x = linear_model(scale=3.0), interior_images()
    y = model(x).argmax(1)
    result = GreedyPixels(model, pixels_per_step=2, max_pixels=8)(x, y)
    changed = (result.adversarial - x).abs() > 1e-6  # (N, C, H, W)
    assert (changed.any(1).flatten(1).sum(1) <= 8).all()
    assert (sizes(x, result.adversarial).l0 == changed.any(1).flatten(1).sum(1)).all()
    moved = result.adversarial[changed]
    assert ((moved == 0) | (moved == 1)).all()  # on the grid: a PNG holds it exactly
    assert result.success.any()
    assert (model(result.adversarial).argmax(1)[result.success] != y[result.success]).all()


def test_greedy_pixels_keeps_to_a_budget_that_steps_do_not_divide():
    model, x = linear_model(scale=0.01), interior_images()  # too flat to fool in 5 pixels
    y = model(x).argmax(1)
    result = GreedyPixels(model, pixels_per_step=3, max_pixels=5)(x, y)
    assert (sizes(x, result.adversarial).l0 == 5).all()  # 3, then the 2 left: never 6
    assert not result.success.any()


@pytest.mark.parametrize(
    "attack",
    [
        lambda m: DeepFool(m),
        lambda m: DeepFool(m, norm=math.inf, grid=True),
        lambda m: CarliniWagnerL2(m, searches=1, steps=2),
        lambda m: GreedyPixels(m, max_pixels=2),
    ],
    ids=["deepfool", "deepfool-linf", "cw", "greedy"],
)
def test_an_image_already_misclassified_is_reported_not_returned_as_found(attack):
    model, x = linear_model(), interior_images()
    y = model(x).argmax(1)
    wrong = y.clone()
    wrong[:2] = (y[:2] + 1) % 5  # labels the model already disagrees with
    result = attack(model)(x, wrong)
    assert result.already.tolist() == [True, True, False, False, False, False]
    assert not result.success[:2].any()
    assert torch.equal(result.adversarial[:2], x[:2])  # untouched, and said so


def test_sizes_are_the_three_measures_of_the_change():
    x = torch.full((1, 3, 2, 2), 0.5)
    x_adversarial = x.clone()
    x_adversarial[0, :, 0, 0] += 3 / 255  # one pixel, all three channels
    x_adversarial[0, 1, 1, 1] -= 4 / 255  # another, one channel
    size = sizes(x, x_adversarial)
    expected_l2 = np.sqrt(3 * 3**2 + 4**2) / 255
    assert size.l2.item() == pytest.approx(expected_l2, rel=1e-5)
    assert size.linf.item() == pytest.approx(4 / 255, rel=1e-5)
    assert size.l0.item() == 2
    assert size.rho.item() == pytest.approx(expected_l2 / np.sqrt(12 * 0.25), rel=1e-5)


def test_fools_judges_targeted_and_untargeted():
    model, x = linear_model(), interior_images()
    y = model(x).argmax(1)
    assert not fools(model, x, y, False).any()
    assert fools(model, x, y, True).all()  # "targeted" at its own class: already there


def test_a_tie_is_judged_as_the_model_answers_it(data):
    """Constant logits (all weights zero) answer class 0, as argmax does everywhere: right on
    the zeros, already wrong on every other digit (step 13's 'already wrong'); never
    'neither right nor wrong'."""
    from adversarial import digits

    model = digits.build_model().requires_grad_(False)
    for parameter in model.net.parameters():
        parameter.zero_()
    _, _, x_test, y_test = data
    x, y = x_test[:30], y_test[:30]
    wrong = (y != 0).tolist()
    assert 0 < sum(wrong) < len(y)
    assert fools(model, x, y, False).tolist() == wrong
    attacks = [
        DeepFool(model, steps=1),
        DeepFool(model, norm=math.inf, steps=1),
        CarliniWagnerL2(model, searches=1, steps=1),
        GreedyPixels(model, max_pixels=1),
    ]
    for attack in attacks:
        assert attack(x, y).already.tolist() == wrong
