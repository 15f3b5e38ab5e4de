"""Step 11's audit: is a defense's robust accuracy real, or did the attack just fail?

`autoattack` runs a compact AutoAttack (Croce and Hein 2020): APGD with cross-entropy,
targeted APGD with the DLR loss, and the Square Attack, and counts an example as robust
only if no attack fooled it: the worst case per example, never an average of accuracies.
`audit` adds the checks of Carlini et al. ("On Evaluating Adversarial Robustness", 2019)
and AutoAttack's own warnings, each a PASS or a FAIL with the figures behind it; `report`
prints them, the robust accuracy under each attack, the worst case, and a verdict.

    from adversarial.audit import Budget, audit, report
    report(audit(model, x, y, epsilon=0.2, budget=Budget()))

`model` is any nn.Module on [0, 1] pixels that returns logits; x, y the examples and their
true classes.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from adversarial.attacks import APGD, FGSM, PGD, APGDTargeted, random_signs
from adversarial.attacks.query import Square, model_query
from adversarial.plumbing.tables import print_table

# A check fails when another attack fools more than this share of the examples that the
# white-box attacks left standing (or when the large epsilon leaves more than it standing).
TOLERANCE = 0.02
LARGE_EPSILON = 1.0  # the whole pixel range: any image at all can be reached


@dataclass(frozen=True)
class Budget:
    """How hard each attack tries: AutoAttack's standard budget by default (100 steps,
    9 target classes, Square's p_init for small images), less for ImageNet on a CPU."""

    steps: int = 100  # FGSM aside, every white-box attack's gradient steps
    target_classes: int = 9  # APGD-T: the runner-up classes tried as targets
    queries: int = 1000  # Square, per example
    p_init: float = 0.8  # Square's first square: 0.8 for small digits, 0.05 on ImageNet
    seed: int = 0


class Check(NamedTuple):
    name: str
    passed: bool
    figures: str  # what was measured


class Audit(NamedTuple):
    epsilon: float
    examples: int
    clean: torch.Tensor  # (N,) bool: classified right without attack
    robust: dict  # attack name -> (N,) bool: right, and not fooled by that attack
    checks: list  # [Check]


class ZeroGradient(nn.Module):
    """model(transform(x)) with the transform out of autograd's sight: the gradient with
    respect to x is exactly zero, as a naive white-box attacker meets a JPEG or a rounding
    (the transform is applied to the saved image; it has no gradient of its own)."""

    def __init__(self, model, transform):
        super().__init__()
        self.model, self.transform = model, transform

    def forward(self, x):
        return self.model(self.transform(x.detach()) + 0 * x)


class SaturatedLogits(nn.Module):
    """The decoy: the model's logits times `scale`. Its classes are the model's, so it is
    no more robust; but the softmax saturates (p = 1 exactly in float32), the
    cross-entropy's gradient vanishes, and attacks that follow it stall."""

    def __init__(self, model, scale=1e4):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


def worst_case(*fooled):
    """(N,) bool: fooled by at least one of the attacks. An example is robust only if no
    attack fooled it: averaging the attacks' accuracies would overstate robustness."""
    return torch.stack(fooled).any(0)


def autoattack(model, x, y, epsilon, budget):
    """{attack name: (N,) bool fooled} for the compact AutoAttack's three attacks."""
    seed = budget.seed
    attacks = {
        "APGD-CE": APGD(model, epsilon, budget.steps, loss="ce", seed=seed),
        "APGD-T (DLR)": APGDTargeted(
            model, epsilon, budget.steps, budget.target_classes, seed=seed
        ),
        "Square": Square(model_query(model), epsilon, budget.queries, budget.p_init, seed=seed),
    }
    return {name: attack(x, y).success.cpu() for name, attack in attacks.items()}


def audit(model, x, y, epsilon, budget=Budget(), undefended=None):
    """Attack the examples every way the audit knows, then run the checks.

    undefended: the same network without the defense, if there is one (transfer check).
    """
    with torch.inference_mode():
        clean = (model(x).argmax(1) == y).cpu()
    right = clean.nonzero()[:, 0]
    x_right, y_right = x[right], y[right]

    def robust_under(fooled):
        """(N,) bool: right when clean and not fooled (`fooled` is over the right ones)."""
        standing = clean.clone()
        standing[right] = ~fooled
        return standing

    fooled = {
        "FGSM": FGSM(model, epsilon, targeted=False)(x_right, y_right).success.cpu(),
        "PGD": PGD(model, epsilon, budget.steps, targeted=False, seed=budget.seed)(
            x_right, y_right
        ).success.cpu(),
    }
    fooled.update(autoattack(model, x_right, y_right, epsilon, budget))
    white_box = worst_case(fooled["FGSM"], fooled["PGD"], fooled["APGD-CE"], fooled["APGD-T (DLR)"])
    n = len(x)

    def beyond_white_box(other):
        """Share of all examples `other` fooled and every white-box attack missed."""
        return (other & ~white_box).sum().item() / n

    checks = []
    one_step = (fooled["FGSM"] & ~(fooled["PGD"] | fooled["APGD-CE"])).sum().item() / n
    checks.append(
        Check(
            "iterative attacks beat one step",
            one_step <= TOLERANCE,
            f"FGSM fooled {one_step:.1%} of the examples PGD and APGD-CE missed",
        )
    )
    longer = APGD(model, epsilon, 2 * budget.steps, loss="ce", seed=budget.seed + 1)
    more = beyond_white_box(longer(x_right, y_right).success.cpu())
    checks.append(
        Check(
            "twice the steps, another start change little",
            more <= TOLERANCE,
            f"APGD-CE with {2 * budget.steps} steps fooled {more:.1%} that white-box missed",
        )
    )
    unbounded = PGD(model, LARGE_EPSILON, budget.steps, targeted=False, seed=budget.seed)
    left = robust_under(unbounded(x_right, y_right).success.cpu()).float().mean().item()
    checks.append(
        Check(
            "accuracy falls to about 0 at a large epsilon",
            left <= TOLERANCE,
            f"PGD at epsilon {LARGE_EPSILON:g} leaves {left:.1%}",
        )
    )
    square = beyond_white_box(fooled["Square"])
    checks.append(
        Check(
            "the score-only attack does no better",
            square <= TOLERANCE,
            f"Square fooled {square:.1%} that every white-box attack missed",
        )
    )
    if undefended is not None:
        made_there = PGD(undefended, epsilon, budget.steps, targeted=False, seed=budget.seed)
        x_transfer = made_there(x_right, y_right).adversarial
        with torch.inference_mode():
            transferred = (model(x_transfer).argmax(1) != y_right).cpu()
        transfer = beyond_white_box(transferred)
        checks.append(
            Check(
                "transfer from the undefended model does no better",
                transfer <= TOLERANCE,
                f"PGD examples made on it fooled {transfer:.1%} that white-box missed",
            )
        )
    with torch.inference_mode():
        noise = random_signs(x_right, epsilon, budget.seed)
        noisy = (model(noise).argmax(1) != y_right).cpu()
    random = beyond_white_box(noisy)
    checks.append(
        Check(
            "random noise does no better",
            random <= TOLERANCE,
            f"random signs fooled {random:.1%} that white-box missed",
        )
    )
    checks.append(gradient_check(model, x_right, y_right))

    robust = {name: robust_under(f) for name, f in fooled.items()}
    auto = worst_case(fooled["APGD-CE"], fooled["APGD-T (DLR)"], fooled["Square"])
    robust["AutoAttack, worst case"] = robust_under(auto)
    robust["every attack, worst case"] = robust_under(worst_case(auto, white_box, noisy))
    return Audit(epsilon, n, clean, robust, checks)


def gradient_check(model, x, y):
    """The input gradient of the cross-entropy: finite, and not zero, on the examples."""
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    per_example = grad.flatten(1)
    zero = (per_example == 0).all(1).float().mean().item()
    infinite = (~per_example.isfinite()).any(1).float().mean().item()
    return Check(
        "gradients are finite and not zero",
        zero <= TOLERANCE and infinite == 0,
        f"zero on {zero:.1%} of the examples, not finite on {infinite:.1%}",
    )


def report(result, title):
    """One screen: the checks, the robust accuracy under each attack, and a verdict."""
    epsilon = f"{result.epsilon:.4g} ({result.epsilon * 255:.4g}/255)"
    print(f"Audit: {title}, epsilon {epsilon}, {result.examples} examples")
    print(f"Clean accuracy: {result.clean.float().mean():.1%}")
    rows = [["PASS" if c.passed else "FAIL", c.name, c.figures] for c in result.checks]
    print_table(["", "check", "measured"], rows)
    accuracy = {name: standing.float().mean().item() for name, standing in result.robust.items()}
    print_table(["attack", "robust accuracy"], [[k, f"{v:.1%}"] for k, v in accuracy.items()])
    failed = [check.name for check in result.checks if not check.passed]
    worst = accuracy["every attack, worst case"]
    if not failed:
        print(
            f"Verdict: no check failed. Robust accuracy {worst:.1%} (the worst case over every "
            "attack) stands, as far as these attacks can tell."
        )
    else:
        print(
            f"Verdict: {len(failed)} check(s) failed: the white-box figures are not to be "
            f"trusted (PGD says {accuracy['PGD']:.1%}); the worst case over every attack is "
            f"{worst:.1%}."
        )
