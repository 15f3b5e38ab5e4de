"""The audit: the worst case per example, the checks on a sound model, on a decoy whose
gradients vanish and on a defense autograd cannot see through, and step 11's modes."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_clean_error, call, succeeded
from torch import nn

import step_11_audit
from adversarial import digits
from adversarial.attacks import LinfBall
from adversarial.audit import Budget, SaturatedLogits, ZeroGradient, audit, worst_case
from adversarial.training import goodfellow_loss

BUDGET = Budget(steps=30, target_classes=2, queries=100)
EXAMPLES = 120  # of the 360 held-out digits: enough for 2% to be a few digits

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Step 7's two models, briefly trained: {name: (model, weights file)}, and the digits."""
    x_train, y_train, x_test, y_test = digits.load_data(0)
    losses = {
        "standard": digits.clean_loss(x_train, y_train),
        "fgsm_trained": lambda model, batch: goodfellow_loss(
            model, x_train[batch], y_train[batch], 0.2
        ),
    }
    models = digits.train_models(losses, x_train, epochs=4, seed=0)
    folder = tmp_path_factory.mktemp("digits")
    files = {}
    for name, model in models.items():
        files[name] = folder / f"digits_{name}.pth"
        torch.save(model.state_dict(), files[name])
    return models, files, x_test[:EXAMPLES], y_test[:EXAMPLES]


def failed(result):
    return {check.name for check in result.checks if not check.passed}


def test_the_worst_case_is_per_example_not_an_average():
    # Two attacks fool disjoint halves: each alone leaves 50%, the average too; together 0%.
    first = torch.tensor([True, True, False, False])
    second = torch.tensor([False, False, True, True])
    assert torch.equal(worst_case(first, second), torch.ones(4, dtype=torch.bool))
    assert torch.equal(worst_case(first, first), first)


def test_the_audits_worst_case_is_every_attack_at_once(trained):
    models, _, x, y = trained
    result = audit(models["standard"], x, y, 0.1, BUDGET)
    robust = result.robust
    attacks = ["APGD-CE", "APGD-T (DLR)", "Square"]
    expected = robust[attacks[0]] & robust[attacks[1]] & robust[attacks[2]]
    assert torch.equal(robust["AutoAttack, worst case"], expected)
    for name, standing in robust.items():
        assert not (standing & ~result.clean).any(), name  # robust implies right when clean
        assert (robust["every attack, worst case"] <= standing).all(), name


def test_the_sound_model_passes_and_the_decoy_fails(trained):
    models, _, x, y = trained
    sound = audit(models["fgsm_trained"], x, y, 0.2, BUDGET, undefended=models["standard"])
    assert failed(sound) == set(), [c for c in sound.checks if not c.passed]

    decoy = SaturatedLogits(models["standard"])
    masked = audit(decoy, x, y, 0.2, BUDGET, undefended=models["standard"])
    # It looks robust to plain PGD: it holds most of what it gets right...
    pgd = masked.robust["PGD"].float().mean().item()
    clean = masked.clean.float().mean().item()
    assert pgd >= 0.8 * clean
    # ...but is no more robust than the model it is made of, and the checks say so.
    worst = masked.robust["every attack, worst case"].float().mean().item()
    assert (
        worst
        <= audit(models["standard"], x, y, 0.2, BUDGET)
        .robust["every attack, worst case"]
        .float()
        .mean()
        .item()
        + 0.05
    )
    assert {
        "gradients are finite and not zero",
        "accuracy falls to about 0 at a large epsilon",
    } <= failed(masked)


def test_a_defense_autograd_cannot_see_through_fails_the_checks(trained):
    models, _, x, y = trained

    def round_to_quarters(images):  # a rounding: zero gradient almost everywhere
        return (images * 4).round() / 4

    hidden = ZeroGradient(models["standard"], round_to_quarters)
    result = audit(hidden, x, y, 0.2, BUDGET, undefended=models["standard"])
    assert {
        "gradients are finite and not zero",
        "accuracy falls to about 0 at a large epsilon",
        "the score-only attack does no better",
    } <= failed(result)


class GradientAtCleanOnly(nn.Module):
    """The model, with a gradient only at the clean images themselves: FGSM, which starts
    there, sees it; PGD and APGD, which start at random points, see zero."""

    def __init__(self, model, clean):
        super().__init__()
        self.model, self.clean = model, clean

    def forward(self, x):
        at_clean = (x[:, None] == self.clean[None]).flatten(2).all(2).any(1)
        gate = at_clean.float().view(-1, 1, 1, 1)
        return self.model(x.detach() + (x - x.detach()) * gate)


class FooledAtTheCornersOnly(nn.Module):
    """The model, except that an image with every pixel at a corner of the epsilon ball
    of a clean image (as random signs and Square make them) is called another class."""

    def __init__(self, model, clean, epsilon):
        super().__init__()
        self.model = model
        ball = LinfBall(clean, epsilon)
        self.lowest, self.highest = ball.lowest, ball.highest

    def forward(self, x):
        logits = self.model(x)
        corner = (x[:, None] == self.lowest[None]) | (x[:, None] == self.highest[None])
        cornered = corner.flatten(2).all(2).any(1)
        wrong = F.one_hot((logits.argmax(1) + 1) % logits.shape[1], logits.shape[1])
        return logits + 100 * cornered[:, None] * wrong


def test_each_check_fails_on_a_model_built_to_fail_it(trained):
    models, _, x, y = trained
    standard = models["standard"]
    gated = audit(GradientAtCleanOnly(standard, x), x, y, 0.2, BUDGET)
    assert "iterative attacks beat one step" in failed(gated)
    hidden = ZeroGradient(standard, lambda images: images)
    assert "transfer from the undefended model does no better" in failed(
        audit(hidden, x, y, 0.2, BUDGET, undefended=standard)
    )
    corners = ZeroGradient(FooledAtTheCornersOnly(standard, x, 0.2), lambda images: images)
    assert {"random noise does no better", "the score-only attack does no better"} <= failed(
        audit(corners, x, y, 0.2, BUDGET)
    )


def test_step_11_on_the_digits_and_the_decoy(trained):
    _, files, _, _ = trained
    tiny = ["--steps", "5", "--target-classes", "1", "--queries", "20"]
    args = ["--models", files["fgsm_trained"], "--undefended", files["standard"], *tiny]
    lines = succeeded(call(step_11_audit, *args))
    assert lines[0] == "Audit: digits_fgsm_trained.pth, epsilon 0.2 (51/255), 360 examples"
    assert lines[-1].startswith("Verdict: ")
    decoy = succeeded(call(step_11_audit, "--decoy", files["standard"], *tiny))
    title = "the decoy (digits_standard.pth, logits x 10,000)"
    assert decoy[0] == f"Audit: {title}, epsilon 0.2 (51/255), 360 examples"
    assert decoy[-1].startswith("Verdict: ") and "failed" in decoy[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "one of the arguments --models --jpeg --decoy is required"),
        (["--jpeg", "--undefended", "x.pth"], "--undefended is for --models"),
        (["--models", "missing.pth"], "missing.pth"),
        # Lite0 takes imagenet_03 (a buckeye) for a custard apple: no example to audit.
        (["--jpeg", "--photos", "imagenet_03", "--model", "efficientnet_lite0"], "none of the"),
    ],
)
def test_bad_arguments_are_one_line(args, message):
    assert_clean_error(call(step_11_audit, *args), message)
