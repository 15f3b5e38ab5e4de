"""The Square Attack: queries only, every query an 8-bit image within epsilon, counted per
image as the README says, reproducible, and it fools what it says it fools."""

import pytest
import torch
from conftest import NoGradient
from torch import nn

from adversarial.attacks.query import HALVINGS, Square, model_query, square_share


def small_model(seed=0, classes=10):
    """A random linear classifier on an 8x8 thumbnail: any image size, varied classes."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(3 * 8 * 8, classes))
    return net.eval().requires_grad_(False)


def images(n, height=16, width=16, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width), generator=generator) / 255


class Recorder:
    """A query function that keeps every batch it was asked about."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def __call__(self, x):
        self.batches.append(x.clone())
        return self.model(NoGradient.apply(x)).double().softmax(-1)


def test_every_query_is_an_8_bit_image_within_epsilon_and_no_gradient_is_read():
    # Four images 60 levels apart: each query's nearest clean image is the one it came from.
    noise = torch.randint(-5, 6, (4, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    clean_levels = torch.tensor([30, 90, 150, 210]).view(-1, 1, 1, 1) + noise
    x = clean_levels / 255
    model = small_model()
    recorder = Recorder(model)
    labels = model(x).argmax(1)
    epsilon = 12.75 / 255  # not a whole number of levels: 12 levels, never 13
    result = Square(recorder, epsilon, queries=60, p_init=0.3)(x, labels)
    assert len(recorder.batches) > 2
    for batch in [*recorder.batches, result.adversarial]:
        levels = batch * 255
        assert torch.allclose(levels, levels.round(), atol=1e-4)  # on the 8-bit grid
        change = (levels.round()[:, None] - clean_levels[None]).abs().flatten(2).amax(2)
        assert (change.amin(1) <= 12).all()  # within epsilon of the image it came from


def test_queries_are_counted_per_image_and_fooled_images_are_not_asked_again():
    model, x = small_model(), images(6)
    predicted = model(x).argmax(1)
    labels = predicted.clone()
    labels[0] = (predicted[0] + 1) % 10  # already misclassified: it costs one query
    recorder = Recorder(model)
    budget = 40
    result = Square(recorder, 2 / 255, queries=budget, p_init=0.3)(x, labels)
    assert result.steps[0] == 1 and result.success[0]
    assert torch.equal(result.adversarial[0], x[0])
    # Every query was made for one image still being attacked, no more, no less.
    assert sum(len(batch) for batch in recorder.batches) == int(result.steps.sum())
    assert len(recorder.batches[0]) == 6 and len(recorder.batches[1]) == 5  # the stripes
    assert (result.steps <= budget).all()
    assert (result.steps[~result.success] == budget).all()  # the unfooled spent it all
    # Independently: the model's class for what the attack returns.
    seen = model(result.adversarial).argmax(1)
    assert torch.equal(result.success, seen != labels)


def test_an_untargeted_and_a_targeted_attack_fool_the_model():
    model, x = small_model(), images(4)
    labels = model(x).argmax(1)
    untargeted = Square(model_query(model), 16 / 255, queries=300, p_init=0.3)(x, labels)
    seen = model(untargeted.adversarial).argmax(1)
    assert (seen != labels).all() and untargeted.success.all()
    target = torch.full_like(labels, int((labels[0] + 1) % 10))
    targeted = Square(model_query(model), 32 / 255, 1000, 0.3, targeted=True)(x[:2], target[:2])
    assert torch.equal(model(targeted.adversarial).argmax(1), target[:2])
    assert targeted.success.all()
    assert (targeted.steps > 1).all()


def test_a_seeded_run_is_reproducible_and_another_seed_differs():
    model, x = small_model(), images(3)
    labels = model(x).argmax(1)
    runs = [
        Square(model_query(model), 4 / 255, 50, 0.3, seed=seed)(x, labels) for seed in (7, 7, 8)
    ]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert torch.equal(runs[0].steps, runs[1].steps)
    assert not torch.equal(runs[0].adversarial, runs[2].adversarial)


def test_non_square_images_and_a_batch_already_fooled_do_not_crash():
    model = small_model()
    x = images(2, height=9, width=23)
    labels = model(x).argmax(1)
    result = Square(model_query(model), 8 / 255, 30, p_init=0.8)(x, labels)
    assert result.adversarial.shape == x.shape
    assert ((result.adversarial - x).abs() <= 8 / 255 + 1e-6).all()
    wrong = (labels + 1) % 10
    all_fooled = Square(model_query(model), 8 / 255, 30)(x, wrong)
    assert all_fooled.success.all() and (all_fooled.steps == 1).all()


@pytest.mark.parametrize("budget", [10_000, 1000])
def test_the_squares_shrink_on_the_papers_schedule(budget):
    scale = budget / 10_000
    # Written out from the paper: p_init up to 10 queries of 10,000, then halved after
    # 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000.
    assert HALVINGS == (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
    assert square_share(0.05, int(10 * scale), budget) == 0.05
    assert square_share(0.05, int(60 * scale), budget) == 0.05 / 4
    assert square_share(0.05, int(8500 * scale), budget) == 0.05 / 512
    assert square_share(0.05, budget - 1, budget) == 0.05 / 512


def test_the_first_square_covers_p_init_of_the_image():
    # 16x16 images, p_init 0.25: the first square is 8x8 (the paper's first iteration).
    model, x = small_model(), images(1)
    recorder = Recorder(model)
    unlikely = model(x).argmin(1)  # targeted at the least likely class: not reached at once
    Square(recorder, 8 / 255, queries=3, p_init=0.25, targeted=True)(x, unlikely)
    assert len(recorder.batches) == 3
    stripes, first_square = recorder.batches[1], recorder.batches[2]
    rows = (first_square != stripes).any(1).any(2)[0].nonzero()[:, 0]
    assert rows.max() - rows.min() + 1 == 8  # the square spans 8 rows: every row it covers


def test_every_square_inside_the_attack_follows_the_papers_schedule():
    """A model that answers the same whatever the image: no square is ever kept, so each
    query is the stripes with one square repainted, whose rows give its side. The paper's
    iteration i (the first square is i = 0, after the image and the stripes) of a budget
    of n = 100 iterations (the stripes included, the image not) draws p_init halved once
    per threshold of (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000) below
    int(i / n * 10000)."""
    model = small_model()
    with torch.no_grad():
        model[-1].weight.zero_()
    recorder = Recorder(model)
    x = images(1)
    labels = model(x).argmax(1)
    Square(recorder, 8 / 255, queries=101, p_init=0.8)(x, labels)
    assert len(recorder.batches) == 101
    stripes = recorder.batches[1]
    sides = []
    for batch in recorder.batches[2:]:
        rows = (batch != stripes).any(1).any(2)[0].nonzero()[:, 0]
        sides.append(int(rows.max() - rows.min() + 1))
    expected = []
    for i in range(99):
        thresholds = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
        halvings = sum(int(i / 100 * 10_000) > t for t in thresholds)
        expected.append(min(max(round((0.8 / 2**halvings * 16 * 16) ** 0.5), 1), 15))
    # i = 0: 14 (p 0.8); i = 1, 2: 7 (100 and 200 pass 10 and 50: p 0.2); i = 3: 5.
    assert expected[:4] == [14, 7, 7, 5] and sides == expected


class Scaled(nn.Module):
    def __init__(self, model, scale):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


def test_on_log_probabilities_scaling_the_logits_changes_no_decision():
    """Logits times 1024 (a power of two: exact in float) classify alike. On float64
    log-probabilities Square's margin is the logits' margin, scaled: every comparison, and
    so every query, is the same. On probabilities the margin underflows: two images with
    different margins score alike, and the search no longer tells them apart."""
    model, x = small_model(), images(4)
    labels = model(x).argmax(1)
    runs = []
    for scale in (1, 1024):
        recorder = Recorder(Scaled(model, scale))
        log_query = model_query(recorder.model, log=True)
        square = Square(log_query, 4 / 255, 60, 0.3, log_probabilities=True)
        runs.append(square(x, labels))
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert torch.equal(runs[0].steps, runs[1].steps)
    saturated = torch.tensor([[0.0, -5.0, -9.0], [0.0, -1.0, -9.0]]) * 1024
    on_probabilities = Square(model_query(nn.Identity()), 4 / 255)
    margins = on_probabilities.loss(model_query(nn.Identity())(saturated), torch.zeros(2).long())
    assert margins[0] == margins[1]  # 5 x 1024 and 1 x 1024 apart: both 708.4, underflowed
    on_logits = Square(model_query(nn.Identity(), log=True), 4 / 255, log_probabilities=True)
    log_p = model_query(nn.Identity(), log=True)(saturated)
    torch.testing.assert_close(
        on_logits.loss(log_p, torch.zeros(2).long()), margins.new_tensor([5120.0, 1024.0])
    )


def test_an_epsilon_below_one_level_is_refused():
    with pytest.raises(ValueError, match="one 8-bit level"):
        Square(model_query(small_model()), 0.001)
