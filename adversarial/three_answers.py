"""Step 17's measurements and tables: the same digits answered three ways (PGD, the exact
MILP, the relaxations), the smallest epsilon each finds, and the three trainings compared
by epsilon. The methods themselves are in adversarial/verify.py.

    from adversarial.three_answers import train_all, answer_all, report_answers
"""

import math
import time
from typing import NamedTuple

import torch

from adversarial import digits, training, verify
from adversarial.attacks import PGD
from adversarial.plumbing.progress import each, note, progress

MODELS = {"standard": "standard", "pgd": "PGD-trained", "ibp": "IBP-trained"}
PGD_STEPS = 50  # of epsilon / 4, from a random start: stronger than the training's 7
RELAXATIONS = {"IBP": verify.interval_bounds, "CROWN": verify.crown_bounds}


def train_all(x, y, epsilon, epochs, hidden, seed, names=tuple(MODELS)):
    """{name: network}: the same initial weights and batches, three losses: clean,
    Madry's PGD (7 steps) and Gowal's IBP, both at `epsilon` (those in `names`)."""
    steps = epochs * math.ceil(len(x) / digits.BATCH_SIZE)
    losses = {
        "standard": digits.clean_loss(x, y),
        "pgd": lambda model, batch: training.madry_loss(model, x[batch], y[batch], epsilon),
        "ibp": verify.ibp_loss(x, y, epsilon, steps),
    }
    models = {}
    for name in names:
        loss = losses[name]
        torch.manual_seed(seed)  # same initial weights
        network = verify.build_network(hidden)
        models[name] = digits.train(network, loss, len(x), epochs, seed, name)
    return models


def attack(model, x, y, epsilon, seed):
    """(N,) bool, (N, 1, 8, 8): PGD fooled each digit, and its image as saved."""
    result = PGD(model, epsilon, steps=PGD_STEPS, targeted=False, seed=seed)(x, y)
    return result.success, result.adversarial


class Answers(NamedTuple):
    fooled: torch.Tensor  # (N,) bool: PGD found an image that fools
    adversarial: torch.Tensor  # PGD's images as saved
    exact: list  # verify.Answer per digit
    certified: dict  # {"IBP": (N,) bool, "CROWN": (N,) bool}
    unstable: torch.Tensor  # (N,) ReLUs unstable over the ball (IBP's bounds)
    seconds: dict  # {"PGD": s, "exact": s, "IBP": s, "CROWN": s}, all digits together


def answer_all(model, x, y, epsilon, time_limit, seed):
    """Every digit of x answered by PGD, the MILP and both relaxations, each timed."""
    seconds = {}
    start = time.perf_counter()
    fooled, adversarial = attack(model, x, y, epsilon, seed)
    seconds["PGD"] = time.perf_counter() - start
    pairs = progress(zip(x, y, strict=True), "exact (MILP)", unit="digit", total=len(y))
    exact = [verify.exact(model, xi, int(yi), epsilon, time_limit) for xi, yi in pairs]
    seconds["exact"] = sum(answer.seconds for answer in exact)
    certified = {}
    for name, bounds in RELAXATIONS.items():
        start = time.perf_counter()
        certified[name] = verify.certified(bounds, model, x, y, epsilon)
        seconds[name] = time.perf_counter() - start
    unstable = verify.unstable_relus(model, x, epsilon)
    return Answers(fooled, adversarial, exact, certified, unstable, seconds)


def report_answers(answers, y, indices, epsilon):
    """Print the accuracy each answer gives and what each cost; return verify.csv's rows
    and the counterexamples {(model, digit index): image}."""
    from adversarial.plumbing.tables import print_table

    n = len(y)
    rows, cost, csv_rows, counterexamples = [], [], [], {}
    for name, a in answers.items():
        robust = [answer.verdict == "robust" for answer in a.exact]
        timeouts = sum(answer.verdict == "timeout" for answer in a.exact)
        share = {key: f"{sum(value) / n:.0%}" for key, value in a.certified.items()}
        rows.append(
            [
                MODELS[name],
                f"{1 - a.fooled.float().mean().item():.0%}",
                f"{sum(robust) / n:.0%}",
                share["CROWN"],
                share["IBP"],
                timeouts,
            ]
        )
        times = [answer.seconds for answer in a.exact]
        cost.append(
            [
                MODELS[name],
                f"{a.unstable.float().mean().item():.1f}",
                int(a.unstable.max()),
                f"{a.seconds['PGD']:.2f}",
                f"{a.seconds['exact']:.1f}",
                f"{max(times):.1f}",
                f"{a.seconds['CROWN']:.3f}",
                f"{a.seconds['IBP']:.4f}",
            ]
        )
        for i, answer in enumerate(a.exact):
            words = {True: "certified", False: "unknown"}
            csv_rows.append(
                [
                    name,
                    indices[i],
                    int(y[i]),
                    f"{epsilon:g}",
                    "fooled" if a.fooled[i] else "not fooled",
                    answer.verdict,
                    words[bool(a.certified["IBP"][i])],
                    words[bool(a.certified["CROWN"][i])],
                ]
            )
            if answer.counterexample is not None:
                counterexamples[name, indices[i]] = answer.counterexample
    levels = int(epsilon * 255 + 1e-3)  # LinfBall's: whole levels within epsilon
    print(f"\nThe first {n} held-out digits at L-inf epsilon {epsilon:g} ({epsilon * 255:g}/255,")
    print(f"so {levels} whole 8-bit levels up or down for each pixel of the saved image):")
    print("accurate under PGD >= exact robust accuracy >= certified, digit by digit")
    header = ["model", "not fooled by PGD", "exact: robust", "CROWN: certified"]
    print_table([*header, "IBP: certified", "MILP timeouts"], rows)
    print("\nWhat each answer cost, in seconds for all of them (MILP: the slowest digit too):")
    header = ["model", "unstable ReLUs (mean)", "max", "PGD", "MILP", "slowest", "CROWN"]
    print_table([*header, "IBP"], cost)
    return csv_rows, counterexamples


def last_true(predicate, low, high):
    """Bisection: the largest k in [low, high) with predicate(k), given predicate(low)
    and not predicate(high) (assuming it flips once)."""
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(middle):
            low = middle
        else:
            high = middle
    return low


def minimal_epsilons(models, x, y, indices, count, time_limit, seed):
    """For `count` held-out digits every model gets right: in 8-bit levels, the largest
    epsilon either relaxation certifies, the smallest with a MILP counterexample (found
    between those two by bisection), and the smallest at which PGD fools."""
    from adversarial.plumbing.tables import print_table

    with torch.no_grad():
        right = torch.stack([m(x).argmax(1) == y for m in models.values()]).all(0)
    chosen = right.nonzero()[:count, 0].tolist()
    rows = []
    for name, model in each(models, "smallest epsilons", unit="model"):
        for i in chosen:
            note(f"digit {indices[i]}")
            xi, yi = x[i : i + 1], y[i : i + 1]

            def proven(k, xi=xi, yi=yi, model=model):
                return any(bool(b(model, xi, yi, k / 255)) for b in _certifiers())

            def survives(k, xi=xi, yi=yi, model=model):
                return not bool(attack(model, xi, yi, k / 255, seed)[0])

            certified = last_true(proven, 0, 256)
            fooled = last_true(survives, 0, 256) + 1
            answers = {}

            def robust(k, xi=xi, yi=yi, model=model, answers=answers):
                answers[k] = verify.exact(model, xi[0], int(yi), k / 255, time_limit).verdict
                return answers[k] != "not robust"

            exact = last_true(robust, certified, fooled) + 1
            timed_out = "timeout" in answers.values()
            rows.append(
                [
                    MODELS[name],
                    indices[i],
                    int(yi),
                    f"{certified}/255",
                    f"<= {exact}/255" if timed_out else f"{exact}/255",
                    f"{fooled}/255",
                ]
            )
    print("\nThe smallest epsilon that changes the class, by bisection on the 8-bit levels:")
    header = ["model", "digit", "label", "certified up to", "exact: smallest", "PGD: smallest"]
    print_table(header, rows)


def _certifiers():
    return [
        lambda m, x, y, e, b=b: verify.certified(b, m, x, y, e)[0] for b in RELAXATIONS.values()
    ]


def by_epsilon(models, x, y, epsilons, seed):
    """{name: {"PGD": [...], "IBP": [...], "CROWN": [...]}}: accuracy under PGD and
    certified accuracy over all of x at each epsilon, the clean accuracy first."""
    results = {}
    for name, model in each(models, "by epsilon", unit="model"):
        clean = digits.accuracy(model, x, y)
        results[name] = {"PGD": [clean], **{key: [clean] for key in RELAXATIONS}}
        for epsilon in epsilons:
            fooled, _ = attack(model, x, y, epsilon, seed)
            results[name]["PGD"].append(1 - fooled.float().mean().item())
            for key, bounds in RELAXATIONS.items():
                share = verify.certified(bounds, model, x, y, epsilon).float().mean().item()
                results[name][key].append(share)
    return results


def report_training(results, epsilons, n, train_epsilon, plot, table):
    """Print the table by epsilon; return the plot's and the CSV's writers."""
    from adversarial.plumbing.figures import curves_writer
    from adversarial.plumbing.tables import csv_writer, print_table

    print(f"\nClean, under PGD and certified accuracy on all {n} held-out digits, by epsilon:")
    columns = [(name, key) for name in results for key in ("PGD", "CROWN", "IBP")]
    header = ["epsilon", *(f"{MODELS[name]}: {key}" for name, key in columns)]
    rows, csv_rows = [], []
    for i, epsilon in enumerate([0, *epsilons]):
        rows.append([f"{epsilon:g}"] + [f"{results[n][k][i]:.1%}" for n, k in columns])
        csv_rows += [[n, f"{epsilon:g}", f"{results[n][k][i]:.4f}", k] for n, k in columns]
    print_table(header, rows)
    panels = [
        (
            f"{MODELS[name]} network",
            [
                ("under PGD", results[name]["PGD"], "rx--"),
                ("certified, CROWN", results[name]["CROWN"], "bo-"),
                ("certified, IBP", results[name]["IBP"], "gs-"),
            ],
        )
        for name in results
    ]
    xlabel, mark = "epsilon (L-inf, pixels in [0, 1])", ("training epsilon", train_epsilon)
    figure = curves_writer(panels, [0, *epsilons], plot, xlabel, "accuracy", mark)
    return {plot: figure, table: csv_writer(["model", "epsilon", "accuracy", "by"], csv_rows)}


def check_saved(models, pngs, x, y, indices, epsilon):
    """Each counterexample read back from its PNG: it must lie within epsilon of its digit
    and its class must not be the digit's label. Returns how many were checked."""
    from adversarial.plumbing.images import load_grey

    position = {index: i for i, index in enumerate(indices)}
    for (name, index), path in pngs.items():
        saved, i = load_grey(path), position[index]
        distance = (saved - x[i]).abs().max().item()
        if not verify.fools(models[name], saved, int(y[i])) or distance > epsilon + 1e-6:
            raise RuntimeError(f"{path}: does not fool {name} within {epsilon:g}")
    return len(pngs)
