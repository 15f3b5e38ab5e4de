"""adversarial/attacks/apgd.py: Auto-PGD's schedule as the paper writes it, every iterate on
the 8-bit grid within epsilon, at least as strong as FGSM and PGD on the digits, and the DLR
loss seeing through logits scaled to mask the cross-entropy's gradient."""

import math

import pytest
import torch
from torch import nn

from adversarial import digits
from adversarial.attacks import APGD, FGSM, PGD, APGDTargeted
from adversarial.attacks.apgd import checkpoints, dlr, targeted_dlr

EPSILON = 0.1  # 25.5 levels: a pixel may move 25 levels, never 26
SEED = 0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def standard(data):
    """Step 7's standard model, 3 epochs on clean digits: about 96% of held-out digits."""
    x_train, y_train, _, _ = data
    losses = {"standard": digits.clean_loss(x_train, y_train)}
    (model,) = digits.train_models(losses, x_train, 3, SEED).values()
    return model


class ScaledLogits(nn.Module):
    """The same classifier, logits times `scale`: the same decisions, but the softmax is
    one-hot in float32, so the cross-entropy and its gradient are exactly 0 (masking)."""

    def __init__(self, model, scale):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


def fooled(model, adversarial, y):
    """The verdicts, independently of the attack: which images are not classified as y."""
    with torch.no_grad():
        return model(adversarial).argmax(1) != y


def test_the_checkpoints_for_100_steps_are_the_papers():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06):
    # 0.41 (+0.19), 0.57 (+0.16), 0.70 (+0.13), 0.80 (+0.10), 0.87 (+0.07), 0.93 and 0.99
    # (+0.06 each); 1.05 is past the budget. w_j = ceil(100 p_j), in exact arithmetic.
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


def test_the_checkpoints_for_other_budgets_are_autoattacks_code():
    # autopgd_base.py: periods of int(0.22 n), shrinking by int(0.03 n) to int(0.06 n),
    # each at least 1. At 20 steps: 4, then 3, 2 and 1 from then on.
    assert checkpoints(20) == [0, 4, 7, 9, *range(10, 20)]
    # At 50: periods of 11, 10, 9, 8, 7 (shrinking by 1); the next, 6, passes the budget.
    assert checkpoints(50) == [0, 11, 21, 30, 38, 45]
    assert checkpoints(1) == [0]


class Pixel(nn.Module):
    """A one-pixel "image" p read as logits (100, p): always class 0, never fooled, so
    every APGD run takes every step; the loss (a function of p) is the test's."""

    def forward(self, x):
        p = x.flatten(1)[:, :1]
        return torch.cat([100 + 0 * p, p], 1)


def pixels_seen(loss, steps=100):
    """Each iterate's pixel p (in levels), from APGD on one pixel at 0.1 in a ball of 0.1
    (so p in [0, 0.2], 0 to 51 levels), raising `loss` of p."""
    losses = []
    on_step = lambda step, f, predicted: losses.append(f.item())  # noqa: E731
    x = torch.full((1, 1, 1, 1), 0.1)
    of_p = lambda logits, labels: loss(logits[..., 1].mean(0))  # noqa: E731
    APGD(Pixel(), 0.1, steps, loss=of_p, seed=SEED, on_step=on_step)(x, torch.zeros(1).long())
    return losses


def test_apgd_halves_its_step_size_when_it_oscillates():
    """The loss peaks between two levels, at 25.5: steps of eta = 2 epsilon (51 levels) jump
    across the ball. Only halving, checkpoint after checkpoint, brings the iterates to the
    peak: eight halvings in 100 steps leave eta at 51 / 256 of a level."""
    peak = 25.5 / 255
    losses = pixels_seen(lambda p: -(p - peak).abs())
    distances = [-f * 255 for f in losses]  # in levels
    assert max(distances[-10:]) <= 3, distances
    assert max(distances[:10]) > 10  # it started with large steps


def test_apgd_restarts_from_its_best_point():
    """The loss is -p, but its gradient says raise p (a misleading gradient, passed
    straight through): the iterates climb to the ball's edge (51 levels) and stay, their
    loss flat. At the first checkpoint APGD must go back to its best point, the start."""

    def misleading(p):
        return -p.detach() + (p - p.detach())

    losses = pixels_seen(misleading)
    levels = [-f * 255 for f in losses]
    first = checkpoints(100)[1]
    assert levels[first] == pytest.approx(51)  # at the edge when the checkpoint comes
    assert levels[first + 1] < 51 - 1  # back from it, towards the start
    assert min(levels[first + 1 :]) <= levels[0] + 1  # at the best point again


def test_dlr_is_the_papers_ratio_and_ignores_the_logits_scale():
    logits = torch.tensor([[[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 5.0]]])  # 1 view, 2 images
    y, t = torch.tensor([0, 1]), torch.tensor([2, 2])
    # -(z_y - max other) / (z_pi1 - z_pi3); -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    expected = torch.tensor([-(3 - 1) / (3 - 0), -(2 - 5) / (5 - 1)])
    torch.testing.assert_close(dlr(logits, y), expected)
    expected_targeted = torch.tensor([-(3 - 0) / (3 - (0 - 1) / 2), -(2 - 1) / (5 - (1 + 0) / 2)])
    torch.testing.assert_close(targeted_dlr(logits, y, t), expected_targeted)
    for scale, shift in ((1e4, 0.0), (1e-3, 7.0)):  # in float64: float32 would lose digits
        moved = logits.double() * scale + shift
        torch.testing.assert_close(dlr(moved, y), expected.double(), rtol=1e-6, atol=0)
        torch.testing.assert_close(
            targeted_dlr(moved, y, t), expected_targeted.double(), rtol=1e-6, atol=0
        )


class Recorder:
    """A forward hook: every image the model is shown, and how many backward passes (the
    gradient steps) went through it."""

    def __init__(self, model):
        self.inputs, self.backward_passes = [], 0
        model.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        self.inputs.append(inputs[0].detach().clone())
        if inputs[0].requires_grad:
            inputs[0].register_hook(self.count)

    def count(self, grad):
        self.backward_passes += 1


def assert_on_the_grid_within_epsilon(images, x):
    """In whole 8-bit levels against the clean image x: on the grid, within 25 levels."""
    levels, clean = images * 255, (x * 255).round()
    assert torch.equal(levels, levels.round())
    assert (levels.round() - clean).abs().max() <= math.floor(EPSILON * 255)
    assert levels.min() >= 0 and levels.max() <= 255


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_every_apgd_iterate_is_on_the_8_bit_grid_within_epsilon(data, standard, loss):
    _, _, x_test, y_test = data
    x, y = x_test[:40], y_test[:40]
    model = digits.build_model()
    model.load_state_dict(standard.state_dict())
    recorder = Recorder(model.requires_grad_(False))
    result = APGD(model, EPSILON, steps=30, loss=loss, seed=SEED)(x, y)
    assert 0 < result.success.sum() < 40  # some fooled early, some take the whole budget
    assert len(recorder.inputs) == 31  # 30 gradient steps, then the last iterate judged
    for seen in recorder.inputs:  # APGD keeps the whole batch: row i is always image i
        assert_on_the_grid_within_epsilon(seen, x)
    assert_on_the_grid_within_epsilon(result.adversarial, x)
    # The batch took gradient steps until its last image was fooled, or the whole budget.
    assert recorder.backward_passes == result.steps.max() == 30
    assert torch.equal(result.success, fooled(model, result.adversarial, y))


def test_every_apgd_t_iterate_is_on_the_8_bit_grid_and_every_step_is_counted(data, standard):
    """One image at a time, so that each image the model sees belongs to a known digit, and
    the backward passes are that digit's gradient steps over all its target runs."""
    _, _, x_test, y_test = data
    model = digits.build_model()
    model.load_state_dict(standard.state_dict())
    model.requires_grad_(False)
    attack = APGDTargeted(model, EPSILON, steps=10, target_classes=3, seed=SEED)
    outcomes = []
    for i in range(12):
        x, y = x_test[i : i + 1], y_test[i : i + 1]
        recorder = Recorder(model)
        result = attack(x, y)
        model._forward_hooks.clear()
        for seen in recorder.inputs:  # the clean image (to rank the targets), then the runs
            assert_on_the_grid_within_epsilon(seen, x)
        assert_on_the_grid_within_epsilon(result.adversarial, x)
        assert recorder.backward_passes == result.steps.item()
        assert result.success.item() == fooled(model, result.adversarial, y).item()
        outcomes.append((result.success.item(), result.steps.item()))
    assert any(success for success, _ in outcomes)
    assert (False, 3 * 10) in outcomes  # a digit that held: three runs of the full budget


def test_apgd_ce_fools_at_least_as_many_digits_as_fgsm_and_pgd(data, standard):
    _, _, x_test, y_test = data
    steps = 20
    fgsm = FGSM(standard, EPSILON, targeted=False)(x_test, y_test)
    pgd = PGD(standard, EPSILON, steps=steps, targeted=False, seed=SEED)(x_test, y_test)
    apgd = APGD(standard, EPSILON, steps=steps, seed=SEED)(x_test, y_test)
    apgd_t = APGDTargeted(standard, EPSILON, steps=steps, target_classes=3, seed=SEED)
    apgd_t = apgd_t(x_test, y_test)
    counts = {}
    for name, result in (("FGSM", fgsm), ("PGD", pgd), ("APGD-CE", apgd), ("APGD-T", apgd_t)):
        verdicts = fooled(standard, result.adversarial, y_test)
        assert torch.equal(result.success, verdicts)
        counts[name] = verdicts.sum().item()
    # Measured: FGSM 144, PGD 160, APGD-CE 164, APGD-T 166 of 360 held-out digits.
    assert counts["APGD-CE"] >= counts["PGD"] >= counts["FGSM"]
    assert counts["APGD-T"] >= counts["FGSM"]
    assert (apgd.steps <= steps).all()


def test_dlr_sees_through_logits_scaled_to_mask_the_gradient(data, standard):
    """The classic decoy: logits times 1e4 change no decision, but the cross-entropy is
    flat in float32, so PGD on it stands still (it fools little beyond the digits already
    misclassified). The DLR, a ratio of logit differences, does not change at all."""
    _, _, x_test, y_test = data
    x, y = x_test[:180], y_test[:180]
    scaled = ScaledLogits(standard, 1e4)
    counts = {}
    for name, model in (("plain", standard), ("scaled", scaled)):
        attacks = {
            "PGD": PGD(model, EPSILON, steps=10, targeted=False, seed=SEED),
            "APGD-DLR": APGD(model, EPSILON, steps=10, loss="dlr", seed=SEED),
            "APGD-T": APGDTargeted(model, EPSILON, steps=10, target_classes=3, seed=SEED),
        }
        for attack_name, attack in attacks.items():
            counts[name, attack_name] = fooled(model, attack(x, y).adversarial, y).sum().item()
    misclassified = fooled(standard, x, y).sum().item()
    # Measured, plain -> scaled: PGD 87 -> 7 (5 misclassified clean), APGD-DLR 81 -> 81,
    # APGD-T 88 -> 88.
    assert counts["scaled", "PGD"] <= misclassified + 0.1 * counts["plain", "PGD"]
    for attack_name in ("APGD-DLR", "APGD-T"):
        assert counts["scaled", attack_name] >= 0.9 * counts["plain", attack_name]
        assert counts["scaled", attack_name] > 3 * counts["scaled", "PGD"]


def test_a_seeded_run_is_reproducible(data, standard):
    _, _, x_test, y_test = data
    x, y = x_test[:60], y_test[:60]
    for attack in (APGD, APGDTargeted):
        first, again = (attack(standard, EPSILON, steps=10, seed=SEED)(x, y) for _ in range(2))
        assert torch.equal(first.adversarial, again.adversarial)
        assert torch.equal(first.steps, again.steps) and torch.equal(first.success, again.success)
        other = attack(standard, EPSILON, steps=10, seed=SEED + 1)(x, y)
        assert not torch.equal(first.adversarial, other.adversarial)  # the seed matters


def test_targeted_apgd_descends_towards_the_labels(data, standard):
    _, _, x_test, y_test = data
    x, target = x_test[:60], (y_test[:60] + 1) % 10
    result = APGD(standard, 0.2, steps=20, targeted=True, seed=SEED)(x, target)
    with torch.no_grad():
        reached = standard(result.adversarial).argmax(1) == target
    assert torch.equal(result.success, reached) and reached.float().mean() > 0.5
    with pytest.raises(ValueError, match="APGDTargeted"):
        APGD(standard, 0.2, loss="dlr", targeted=True)
    with pytest.raises(ValueError, match="loss must be"):
        APGD(standard, 0.2, loss="margin")


def tiny_net(seed, classes=10):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, classes))
    return net.requires_grad_(False)


def test_an_ensemble_must_all_be_fooled_and_every_target_run_is_counted(data):
    """One member answers class 1 whatever the image: nothing is ever fooled, so each digit
    takes APGD's whole budget, and APGD-T's for each of its targets."""
    _, _, x_test, _ = data
    x = x_test[:8]
    fooled_by_anything, never_fooled = tiny_net(1), tiny_net(2)
    with torch.no_grad():
        never_fooled[-1].weight.zero_()
        never_fooled[-1].bias.copy_(torch.arange(10.0))  # distinct logits, for the ranks
        never_fooled[-1].bias[1] = 100.0
    labels = torch.ones(8, dtype=torch.long)
    sizes = []
    on_step = lambda step, loss, predicted: sizes.append((step, len(loss)))  # noqa: E731
    ensemble = [fooled_by_anything, never_fooled]
    apgd = APGD(ensemble, 1.0, steps=12, seed=SEED)(x, labels)
    assert not apgd.success.any() and torch.equal(apgd.steps, torch.full((8,), 12))
    apgd_t = APGDTargeted(ensemble, 1.0, steps=12, target_classes=4, seed=SEED, on_step=on_step)
    result = apgd_t(x, labels)
    assert not result.success.any() and torch.equal(result.steps, torch.full((8,), 4 * 12))
    assert sizes == [(step, 8) for _ in range(4) for step in range(13)]  # 4 runs of 12 + 1
    assert APGD(fooled_by_anything, 1.0, steps=12, seed=SEED)(x, labels).success.all()


def test_apgd_t_takes_the_targets_in_the_order_of_the_clean_logits(data):
    """Logits all but fixed at 0, 1, ..., 9: from true class 9 the targets are 8, 7, 6, and
    each run's first loss is its target's DLR, -(z_9 - z_t) / (z_9 - (z_7 + z_6) / 2)."""
    _, _, x_test, _ = data
    net = tiny_net(3)
    with torch.no_grad():
        net[-1].weight.mul_(1e-4)
        net[-1].bias.copy_(torch.arange(10.0))
    first_losses = []
    on_step = lambda step, loss, predicted: step == 0 and first_losses.append(loss)  # noqa: E731
    attack = APGDTargeted(net, EPSILON, steps=5, target_classes=3, seed=SEED, on_step=on_step)
    result = attack(x_test[:4], torch.full((4,), 9))
    assert not result.success.any()
    for loss, t in zip(first_losses, (8, 7, 6), strict=True):
        torch.testing.assert_close(loss, torch.full((4,), -(9 - t) / 2.5), atol=1e-2, rtol=0)
