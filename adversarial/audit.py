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
true classes. The audit judges every attack's saved example itself. A model whose two
forward passes on the same input differ is randomized: then, as AutoAttack's version
"rand", the gradient attacks average the loss over `Budget.draws` draws (EOT, Athalye et
al. 2018; APGD-CE and the untargeted APGD-DLR as AutoAttack), and each saved example is
judged on `Budget.votes` draws: the share of draws right (the expected per-draw accuracy)
and the majority vote. A model without a gradient (no autograd graph, or a zero one)
fails the gradient check, its gradient attacks are reported blind, and the rest still run.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from adversarial.attacks import APGD, FGSM, PGD, APGDTargeted, random_signs
from adversarial.attacks.apgd import dlr
from adversarial.attacks.query import Square, model_query
from adversarial.attacks.shared import input_gradient, mean_cross_entropy
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
    9 target classes, Square's p_init for small images), less for ImageNet on a CPU;
    for a randomized model, AutoAttack's EOT over 20 draws."""

    steps: int = 100  # FGSM aside, every white-box attack's gradient steps
    target_classes: int = 9  # APGD-T: the runner-up classes tried as targets
    queries: int = 1000  # Square, per example
    p_init: float = 0.8  # Square's first square: 0.8 for small digits, 0.05 on ImageNet
    seed: int = 0
    draws: int = 20  # a randomized model: draws averaged in each gradient step (EOT)
    votes: int = 100  # a randomized model: draws each saved example is judged on


class Check(NamedTuple):
    name: str
    passed: bool
    figures: str  # what was measured


class Audit(NamedTuple):
    epsilon: float
    examples: int
    clean: torch.Tensor  # (N,) bool: classified right without attack (majority vote)
    robust: dict  # attack name -> (N,) bool: right (majority vote), not fooled by it
    checks: list  # [Check]
    per_draw: dict  # attack name -> (N,) float: the share of draws right (0 or 1 if not random)
    randomized: tuple  # (EOT draws, votes) if two forward passes differed, else ()
    blind: tuple  # the gradient attacks whose loss had no gradient on the examples


class ZeroGradient(nn.Module):
    """model(transform(x)) with the transform out of autograd's sight: the gradient with
    respect to x is exactly zero, as a naive white-box attacker meets a JPEG or a rounding
    (the transform is applied to the saved image; it has no gradient of its own)."""

    def __init__(self, model, transform):
        super().__init__()
        self.model, self.transform = model, transform

    def forward(self, x):
        return self.model(self.transform(x.detach()))


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


def autoattack_attacks(model, epsilon, budget, randomized=False):
    """{name: attack} of the compact AutoAttack: APGD-CE, APGD-T (DLR) and Square; for a
    randomized model AutoAttack's version "rand": APGD-CE and APGD-DLR with EOT."""
    seed = budget.seed
    if randomized:
        eot = [model] * budget.draws  # an "ensemble" of draws: its loss is their mean
        return {
            "APGD-CE": APGD(eot, epsilon, budget.steps, loss="ce", seed=seed),
            "APGD-DLR": APGD(eot, epsilon, budget.steps, loss="dlr", seed=f"{seed}/DLR"),
        }
    return {
        "APGD-CE": APGD(model, epsilon, budget.steps, loss="ce", seed=seed),
        "APGD-T (DLR)": APGDTargeted(
            model,
            epsilon,
            budget.steps,
            budget.target_classes,
            seed=seed,
            on_step=runs_of(budget.target_classes, "target"),
        ),
        "Square": square_on_logits(model, epsilon, budget),
    }


def square_on_logits(model, epsilon, budget):
    """Square reading float64 log-probabilities: its margin is the logits' (as AutoAttack's
    Square reads logits), so scaling them changes none of its decisions."""
    query = model_query(model, log=True)
    return Square(
        query, epsilon, budget.queries, budget.p_init, seed=budget.seed, log_probabilities=True
    )


def autoattack(model, x, y, epsilon, budget):
    """{attack name: (N,) bool fooled} for the compact AutoAttack's three attacks."""
    attacks = autoattack_attacks(model, epsilon, budget)
    return {name: attack(x, y).success.cpu() for name, attack in each(attacks, "AutoAttack")}


def is_randomized(model, x):
    """Do two forward passes on the same images differ?"""
    with torch.inference_mode():
        return not torch.equal(model(x), model(x))


def right_on_draws(model, x, y, votes):
    """(N,) on the CPU: the share of `votes` forward passes that classify x as y (0 or 1
    for a deterministic model, judged once)."""
    right = torch.zeros(len(x))
    with torch.inference_mode():
        for _ in range(votes):
            right += (model(x).argmax(1) == y).float().cpu()
    return right / votes


def audit(model, x, y, epsilon, budget=Budget(), undefended=None):
    """Attack the examples every way the audit knows, then run the checks.

    undefended: the same network without the defense, if there is one (transfer check).
    """
    device = device_of(model)
    x, y = x.to(device), y.to(device)
    if undefended is not None:
        undefended = undefended.to(device)
    randomized = is_randomized(model, x)
    votes = budget.votes if randomized else 1
    clean_share = right_on_draws(model, x, y, votes)
    clean = clean_share > 0.5
    if not clean.any():
        raise UserError("the model classifies none of the examples right: nothing to audit")
    right = clean.nonzero()[:, 0]  # only these are attacked
    x, y = x[right], y[right]
    n = len(clean)

    def judged(images):
        """(n right,) the share of draws that classify the saved images right."""
        return right_on_draws(model, images, y, votes)

    def over_all(share):
        """(N,) over every example: the share right, 0 where wrong when clean."""
        everywhere = torch.zeros(n)
        everywhere[right] = share
        return everywhere

    steps, seed = budget.steps, budget.seed
    attacked = [model] * budget.draws if randomized else model  # EOT: the mean loss
    attacks = {
        "FGSM": FGSM(attacked, epsilon, targeted=False),
        # Its own random start: not APGD-CE's (one seed hashed with each image).
        "PGD": PGD(attacked, epsilon, steps, targeted=False, seed=f"{seed}/PGD"),
        **autoattack_attacks(model, epsilon, budget, randomized),
    }
    if randomized:  # the score-only attack, on one draw per query
        attacks["Square"] = square_on_logits(model, epsilon, budget)
    results = {name: attack(x, y) for name, attack in each(attacks, "audit")}
    shares = {name: judged(result.adversarial) for name, result in results.items()}
    fooled = {name: share <= 0.5 for name, share in shares.items()}  # by majority vote
    gradient_attacks = [name for name in attacks if name != "Square"]
    white_box = worst_case(*(fooled[name] for name in gradient_attacks))
    iterative = worst_case(fooled["PGD"], fooled["APGD-CE"])
    longer = APGD(attacked, epsilon, 2 * steps, loss="ce", seed=seed + 1)(x, y)
    shares["longer"] = judged(longer.adversarial)
    # From the clean image, so that an attack that cannot move leaves what it found.
    unbounded = PGD(attacked, LARGE_EPSILON, steps, random_start=False, targeted=False)(x, y)
    shares["noise"] = judged(random_signs(x, epsilon, seed))

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
            share((shares["longer"] <= 0.5) & ~white_box),
            f"APGD-CE with {2 * steps} steps fooled {{}} that white-box missed",
        ),
        check(
            "accuracy falls to about 0 at a large epsilon",
            (judged(unbounded.adversarial) > 0.5).sum().item() / n,
            f"PGD at epsilon {LARGE_EPSILON:g}, from the image, leaves {{}}",
        ),
        check(
            "the score-only attack does no better",
            share(fooled["Square"] & ~white_box),
            "Square fooled {} that every white-box attack missed",
        ),
    ]
    if undefended is not None:
        made_there = PGD(undefended, epsilon, steps, targeted=False, seed=seed)(x, y)
        shares["transfer"] = judged(made_there.adversarial)
        checks.append(
            check(
                "transfer from the undefended model does no better",
                share((shares["transfer"] <= 0.5) & ~white_box),
                "PGD examples made on it fooled {} that white-box missed",
            )
        )
    checks.append(
        check(
            "random noise does no better",
            share((shares["noise"] <= 0.5) & ~white_box),
            "random signs fooled {} that white-box missed",
        )
    )
    # Where the gradient attacks looked: the clean examples, and where PGD and APGD-CE
    # ended on those still standing.
    standing = ~white_box
    ends = [results[name].adversarial[standing.to(device)] for name in ("PGD", "APGD-CE")]
    gradient, blind = gradient_check(model, x, y, ends, y[standing.to(device)], n)
    checks.append(gradient)

    auto_names = list(autoattack_attacks(model, epsilon, budget, randomized))
    per_draw = {name: over_all(shares[name]) for name in attacks}
    per_draw["AutoAttack, worst case"] = over_all(
        torch.stack([shares[name] for name in auto_names]).amin(0)
    )
    per_draw["every attack, worst case"] = over_all(torch.stack(list(shares.values())).amin(0))
    robust = {name: right_share > 0.5 for name, right_share in per_draw.items()}
    blind_attacks = tuple(
        name
        for name in gradient_attacks
        if (blind["DLR"] if "DLR" in name else blind["cross-entropy"])
    )
    random = (budget.draws, budget.votes) if randomized else ()
    return Audit(epsilon, n, clean, robust, checks, per_draw, random, blind_attacks)


def check(name, share, measured):
    """A check that passes when `share` (of all the examples) is at most TOLERANCE;
    measured: what was measured, with {} for the share."""
    return Check(name, share <= TOLERANCE, measured.format(f"{share:.1%}"))


def zero_or_not_finite(model, x, y, loss):
    """(N,) bool, (N,) bool: the input gradient of the loss is zero (none at all: no
    autograd graph from the input), and is not finite, for each example."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        f = loss(model(x)[None], y)
    grad = input_gradient(f, x).flatten(1)
    return (grad == 0).all(1).cpu(), (~grad.isfinite()).any(1).cpu()


def gradient_check(model, x, y, ends, y_ends, n):
    """The input gradient of the cross-entropy: finite, and not zero, at the clean examples
    and at the attacks' end points `ends` (labels y_ends) on the examples still standing.
    Also which losses are blind: {"cross-entropy": bool, "DLR": bool}, zero on more than
    TOLERANCE of the examples."""
    blind, figures = {}, {}
    for name, loss in (("cross-entropy", mean_cross_entropy), ("DLR", dlr)):
        zero, infinite = zero_or_not_finite(model, x, y, loss)
        zero_at_ends = torch.zeros(len(y_ends), dtype=torch.bool)
        for end in ends:
            if len(end):
                zero_at_ends |= zero_or_not_finite(model, end, y_ends, loss)[0]
        figures[name] = (zero.sum().item() / n, zero_at_ends.sum().item() / n, infinite)
        blind[name] = max(figures[name][:2]) > TOLERANCE
    at_clean, at_ends, infinite = figures["cross-entropy"]
    passed = max(at_clean, at_ends) <= TOLERANCE and not infinite.any()
    measured = (
        f"zero on {at_clean:.1%} of the examples, on {at_ends:.1%} at the attacks' end "
        f"points, not finite on {infinite.float().sum().item() / n:.1%}"
    )
    return Check("gradients are finite and not zero", passed, measured), blind


def report(result, title):
    """One screen: the checks, the robust accuracy under each attack, and a verdict."""
    epsilon = epsilon_text(result.epsilon, levels=True)
    print(f"Audit: {title}, epsilon {epsilon}, {result.examples} examples")
    per_draw = {name: share.mean().item() for name, share in result.per_draw.items()}
    majority = {name: standing.float().mean().item() for name, standing in result.robust.items()}
    clean = result.clean.float().mean().item()
    if result.randomized:
        draws, votes = result.randomized
        print(
            "Randomized: two forward passes on the same input differ. The gradient attacks "
            f"average their loss over {draws} draws (EOT); each example is judged on "
            f"{votes} draws."
        )
    print(f"Clean accuracy: {clean:.1%}" + (" (majority vote)" if result.randomized else ""))
    rows = [["PASS" if c.passed else "FAIL", c.name, c.figures] for c in result.checks]
    print_table(["", "check", "measured"], rows)

    def name_of(attack):
        return f"{attack} (blind)" if attack in result.blind else attack

    if result.randomized:
        header = ["attack", "expected per draw", "majority vote"]
        table = [[name_of(k), f"{per_draw[k]:.1%}", f"{v:.1%}"] for k, v in majority.items()]
    else:
        header = ["attack", "robust accuracy"]
        table = [[name_of(k), f"{v:.1%}"] for k, v in majority.items()]
    print_table(header, table)
    if result.blind:
        print("blind: the attack's loss had no gradient (zero, or no graph) on the examples")
    failed = [check.name for check in result.checks if not check.passed]
    worst = majority["every attack, worst case"]
    figure = f"{worst:.1%}"
    if result.randomized:
        figure = (
            f"{per_draw['every attack, worst case']:.1%} expected per draw, {worst:.1%} by "
            "majority vote"
        )
    if not failed:
        print(
            f"Verdict: no check failed. Robust accuracy {figure} (the worst case over every "
            "attack) stands, as far as these attacks can tell."
        )
    else:
        more = ": an attack written for this defense may find more" if worst > 0 else ""
        print(
            f"Verdict: {len(failed)} check(s) failed: the white-box figures are not to be "
            f"trusted (PGD says {majority['PGD']:.1%}). Robust accuracy is at most {figure} "
            f"(the worst case over every attack){more}."
        )
