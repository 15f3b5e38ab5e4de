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
from adversarial.models import device_of
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.progress import each, runs_of
from adversarial.plumbing.tables import epsilon_text, print_table

# A check fails when what it measures exceeds this share of all the examples: what another
# attack fooled and the white-box attacks missed, the examples a large epsilon leaves, or
# those with a zero gradient.
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
            model,
            epsilon,
            budget.steps,
            budget.target_classes,
            seed=seed,
            on_step=runs_of(budget.target_classes, "target"),
        ),
        "Square": Square(model_query(model), epsilon, budget.queries, budget.p_init, seed=seed),
    }
    return {name: attack(x, y).success.cpu() for name, attack in each(attacks, "AutoAttack")}


def audit(model, x, y, epsilon, budget=Budget(), undefended=None):
    """Attack the examples every way the audit knows, then run the checks.

    undefended: the same network without the defense, if there is one (transfer check).
    """
    device = device_of(model)
    x, y = x.to(device), y.to(device)
    if undefended is not None:
        undefended = undefended.to(device)
    clean = misclassified(model, x, y).logical_not()
    if not clean.any():
        raise UserError("the model classifies none of the examples right: nothing to audit")
    right = clean.nonzero()[:, 0]  # only these can be fooled
    x, y = x[right], y[right]
    n = len(clean)

    def robust_under(fooled):
        """(N,) bool over every example: right when clean and not fooled."""
        standing = clean.clone()
        standing[right] = ~fooled
        return standing

    steps, seed = budget.steps, budget.seed
    first = {
        "FGSM": FGSM(model, epsilon, targeted=False),
        "PGD": PGD(model, epsilon, steps, targeted=False, seed=seed),
    }
    fooled = {name: attack(x, y).success.cpu() for name, attack in each(first, "audit")}
    fooled.update(autoattack(model, x, y, epsilon, budget))
    white_box = worst_case(fooled["FGSM"], fooled["PGD"], fooled["APGD-CE"], fooled["APGD-T (DLR)"])
    iterative = worst_case(fooled["PGD"], fooled["APGD-CE"])
    more = {
        "longer": APGD(model, epsilon, 2 * steps, loss="ce", seed=seed + 1),
        "unbounded": PGD(model, LARGE_EPSILON, steps, targeted=False, seed=seed),
    }
    longer, unbounded = (a(x, y).success.cpu() for _, a in each(more, "audit's checks"))
    noisy = misclassified(model, random_signs(x, epsilon, seed), y)

    def share(found):
        """Of all the examples: those `found` fooled and the reference missed."""
        return found.sum().item() / n

    checks = [
        check(
            "iterative attacks beat one step",
            share(fooled["FGSM"] & ~iterative),
            "FGSM fooled {} of the examples PGD and APGD-CE missed",
        ),
        check(
            "twice the steps, another start change little",
            share(longer & ~white_box),
            f"APGD-CE with {2 * steps} steps fooled {{}} that white-box missed",
        ),
        check(
            "accuracy falls to about 0 at a large epsilon",
            robust_under(unbounded).float().mean().item(),
            f"PGD at epsilon {LARGE_EPSILON:g} leaves {{}}",
        ),
        check(
            "the score-only attack does no better",
            share(fooled["Square"] & ~white_box),
            "Square fooled {} that every white-box attack missed",
        ),
    ]
    if undefended is not None:
        made_there = PGD(undefended, epsilon, steps, targeted=False, seed=seed)(x, y)
        transferred = misclassified(model, made_there.adversarial, y)
        checks.append(
            check(
                "transfer from the undefended model does no better",
                share(transferred & ~white_box),
                "PGD examples made on it fooled {} that white-box missed",
            )
        )
    checks.append(
        check(
            "random noise does no better",
            share(noisy & ~white_box),
            "random signs fooled {} that white-box missed",
        )
    )
    checks.append(gradient_check(model, x, y))

    robust = {name: robust_under(f) for name, f in fooled.items()}
    auto = worst_case(fooled["APGD-CE"], fooled["APGD-T (DLR)"], fooled["Square"])
    robust["AutoAttack, worst case"] = robust_under(auto)
    every = [auto, white_box, longer, noisy]  # every attack within epsilon
    if undefended is not None:
        every.append(transferred)
    robust["every attack, worst case"] = robust_under(worst_case(*every))
    return Audit(epsilon, n, clean, robust, checks)


def check(name, share, measured):
    """A check that passes when `share` (of all the examples) is at most TOLERANCE;
    measured: what was measured, with {} for the share."""
    return Check(name, share <= TOLERANCE, measured.format(f"{share:.1%}"))


def misclassified(model, x, y):
    """(N,) bool on the CPU: the model's class is not y."""
    with torch.inference_mode():
        return (model(x).argmax(1) != y).cpu()


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
    epsilon = epsilon_text(result.epsilon, levels=True)
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
