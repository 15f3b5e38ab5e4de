"""The audit: the worst case per example, the checks on a sound model, on a decoy whose
gradients vanish and on a defense autograd cannot see through, and step 11's modes."""

import contextlib
import io

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_clean_error, call, succeeded
from torch import nn

import step_11_audit
from adversarial import digits
from adversarial.attacks import LinfBall, quantize
from adversarial.audit import Budget, SaturatedLogits, ZeroGradient, audit, report, worst_case
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


class Thermometer(nn.Module):
    """The model on its input rounded to the 17 ink levels by a thermometer encoding, its
    bits computed as comparisons (Buckman et al. 2018, written the usual way): the output
    has no autograd graph back to the input."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("thresholds", (torch.arange(16) + 0.5) / 16)

    def forward(self, x):
        bits = (x[..., None] > self.thresholds).float()
        return self.model(bits.mean(-1))


class Noisy(nn.Module):
    """The model on its input plus fresh Gaussian noise at every forward pass."""

    def __init__(self, model, sigma):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        return self.model(x + self.sigma * torch.randn_like(x))


class Refusing(nn.Module):
    """A detector: class 0, firmly, whenever a pixel leaves the digits' 17 ink levels;
    otherwise the model. Its gradient is the model's at the clean digits, and zero
    wherever an attack has moved a pixel off the levels."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        on_levels = quantize((x * 16).round() / 16)
        off = ((x - on_levels).abs() > 1e-4).flatten(1).any(1)
        refusal = torch.zeros(len(x), 10, device=x.device)
        refusal[:, 0] = 100.0
        return torch.where(off[:, None], refusal, self.model(x))


TINY = Budget(steps=10, target_classes=1, queries=100, draws=4, votes=25)


def verdict(result):
    """The report's last line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report(result, "a test")
    return out.getvalue().splitlines()[-1]


def test_a_model_with_no_graph_fails_the_gradient_check_and_square_still_runs(trained):
    models, _, x, y = trained
    x, y = x[:60], y[:60]
    result = audit(Thermometer(models["standard"]), x, y, 0.2, TINY)  # no traceback
    assert "gradients are finite and not zero" in failed(result)
    assert set(result.blind) == {"FGSM", "PGD", "APGD-CE", "APGD-T (DLR)"}
    assert "accuracy falls to about 0 at a large epsilon" in failed(result)  # PGD cannot move
    # Square, which needs no gradient, still ran: it fools what the blind attacks missed.
    square = result.robust["Square"].float().mean()
    assert square < result.robust["PGD"].float().mean() - 0.2
    assert "at most" in verdict(result) and "stands" not in verdict(result)


def test_a_randomized_model_is_attacked_with_eot_and_judged_on_draws(trained):
    """At 1/255 the noisy model keeps most digits on most draws. Counting a digit fooled
    the first time one noisy pass errs (one draw) would report a far lower figure."""
    models, _, x, y = trained
    x, y = x[:60], y[:60]
    noisy = Noisy(models["standard"], 0.1)
    result = audit(noisy, x, y, 1 / 255, TINY)
    assert result.randomized
    clean = result.clean.float().mean().item()
    worst = result.robust["every attack, worst case"].float().mean().item()
    assert worst >= 0.8 * clean
    per_draw = result.per_draw["every attack, worst case"]
    assert ((per_draw > 0) & (per_draw < 1)).any()  # shares of draws, not verdicts of one
    assert (per_draw[result.robust["every attack, worst case"]] > 0.5).all()
    assert "expected per draw" in verdict(result) and "majority vote" in verdict(result)
    # The same model judged on one draw per attack loses digits to chance alone.
    torch.manual_seed(0)
    with torch.no_grad():
        one_draw = torch.stack([noisy(x).argmax(1) == y for _ in range(8)]).all(0)
    assert one_draw.float().mean() < worst


def test_a_detector_that_refuses_fails_the_gradient_check_at_the_end_points(trained):
    models, _, x, y = trained
    result = audit(Refusing(models["fgsm_trained"]), x, y, 0.2, TINY)
    gradient = next(c for c in result.checks if c.name == "gradients are finite and not zero")
    assert not gradient.passed and gradient.figures.startswith("zero on 0.0% of the examples")
    assert "at most" in verdict(result)


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
