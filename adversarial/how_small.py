"""Step 13's measurements and tables: how small a change fools the model.

`minimal_attacks` builds the minimal-perturbation attacks and `budget_attacks` every attack
of the course with a budget epsilon; `run_attack` runs one and times it; `rounding_table`
sets each minimal example as the papers leave it (floats) beside what its PNG keeps;
`scoreboard` judges every attack's 8-bit image, on the model and on the others, as a table
(and the rows of its CSV); `minimal_l2_over_photos` and `compare_on_digits` give the distributions.
"""

import math
import statistics
import time
from typing import NamedTuple

import torch

from adversarial.attacks import FGSM, PGD, Square, TutorialSGD, model_query, quantize
from adversarial.attacks.minimal import CarliniWagnerL2, DeepFool, GreedyPixels, fools, sizes
from adversarial.plumbing.figures import distributions_writer
from adversarial.plumbing.files import write_all
from adversarial.plumbing.progress import each, progress
from adversarial.plumbing.samples import sample_photo, true_class
from adversarial.plumbing.tables import csv_writer, print_table
from adversarial.transfer import judge

# The attacks whose best is the smallest L2 found, and the smallest L-inf, of an image.
MINIMAL_L2, MINIMAL_LINF = ("DeepFool L2", "CW-L2"), ("DeepFool L-inf",)


class Settings(NamedTuple):
    """The budgets of step 13's attacks; the defaults are the command line's."""

    epsilon: float = 2 / 255  # the budget attacks' L-inf ball (step 5's default)
    steps: int = 30  # the tutorial's SGD and PGD (step 5's default)
    queries: int = 1000  # the Square Attack (step 10's default)
    cw_searches: int = 5
    cw_steps: int = 100
    max_pixels: int = 5000  # the greedy L0 attack's budget: 10% of a 224 x 224 image
    pixels_per_step: int = 10
    seed: int = 0


class Run(NamedTuple):
    """One attack on a batch: what it returned, its cost, and its time."""

    adversarial: torch.Tensor  # (N, C, H, W) on the CPU
    already: torch.Tensor  # (N,) bool: the model was fooled before the attack
    cost: torch.Tensor  # (N,) gradient evaluations (a query attack: queries)
    seconds: float


def minimal_attacks(model, settings, targeted, grid):
    """name -> attack: DeepFool (L2, L-inf), CW-L2 and, on the grid, the greedy L0 attack
    (its changes are to 0 or 1, on the grid already)."""
    attacks = {
        "DeepFool L2": DeepFool(model, targeted=targeted, grid=grid),
        "DeepFool L-inf": DeepFool(model, norm=math.inf, targeted=targeted, grid=grid),
        "CW-L2": CarliniWagnerL2(
            model, settings.cw_searches, settings.cw_steps, targeted=targeted, grid=grid
        ),
    }
    if grid:
        attacks["greedy pixels (L0)"] = GreedyPixels(
            model, settings.pixels_per_step, settings.max_pixels, targeted=targeted
        )
    return attacks


def budget_attacks(model, settings, targeted):
    """name -> attack: every attack of steps 5 and 10 (all judged on the saved image)."""
    epsilon, steps = settings.epsilon, settings.steps
    p_init = 0.01 if targeted else 0.05  # step 10's square sizes on ImageNet
    return {
        "tutorial SGD": TutorialSGD(model, epsilon, steps, targeted=targeted),
        "FGSM": FGSM(model, epsilon, targeted=targeted),
        "PGD": PGD(model, epsilon, steps, targeted=targeted, seed=settings.seed),
        "Square": Square(
            model_query(model), epsilon, settings.queries, p_init, targeted, settings.seed
        ),
    }


def run_attack(attack, x, labels):
    """Run one attack (minimal or with a budget) on a batch, timed."""
    start = time.perf_counter()
    result = attack(x, labels)
    seconds = time.perf_counter() - start
    if hasattr(result, "gradients"):  # a minimal attack
        return Run(result.adversarial.cpu(), result.already.cpu(), result.gradients.cpu(), seconds)
    already = torch.zeros(len(x), dtype=torch.bool)  # a budget attack has none to report
    return Run(result.adversarial.cpu(), already, result.steps.cpu(), seconds)


def run_attacks(attacks, x, labels, what="attacks"):
    """run_attack for each of `attacks` ({name: attack}), with progress on stderr."""
    return {name: run_attack(attack, x, labels) for name, attack in each(attacks, what)}


def size_cells(x, x_adversarial):
    """L2, L-inf (in 8-bit levels), L0 (pixels) and rho of one image's change, as cells."""
    size = sizes(x, x_adversarial)
    linf = size.linf.item() * 255
    levels = f"{linf:.0f}/255" if abs(linf - round(linf)) < 1e-3 else f"{linf:.2f}/255"
    return [f"{size.l2.item():.3f}", levels, str(size.l0.item()), f"{size.rho.item():.1e}"]


def short(model):
    """'efficientnet_lite1' -> 'lite1': a column header."""
    return model.name.removeprefix("efficientnet_")


def yes(fooled):
    return "yes" if fooled else "no"


def yes_or_no(share_fooled):
    """A one-photo verdict of step 9's judge: 1 yes, 0 no, NaN n/a (wrong when clean)."""
    return "n/a" if math.isnan(share_fooled) else yes(share_fooled == 1)


def rounding_table(model, x, labels, targeted, floats_runs):
    """Each minimal example as floats (where the papers stop) and as its PNG holds it."""
    header = ["attack", "L2", "L-inf", "L0", "rho", "fools", "its PNG fools", "PNG's L0"]
    rows = []
    for name, run in floats_runs.items():
        rounded = quantize(run.adversarial)  # what saving as a PNG keeps
        rows.append(
            [
                name,
                *size_cells(x, run.adversarial),
                yes(fools(model, run.adversarial, labels, targeted).item()),
                yes(fools(model, rounded, labels, targeted).item()),
                str(sizes(x, rounded).l0.item()),
            ]
        )
    print_table(header, rows)


def scoreboard(x, runs, goals, models, references, target):
    """One row per attack: does its image (on the 8-bit grid: what its PNG holds) fool the
    model (the first of `models`), how big is the change, at what cost, and does it fool
    each other model (step 9's judge: the target, or no longer the photo's class; n/a
    where a model is wrong on the clean photo).
    runs: name -> Run; goals: what each was asked. Printed; returns (header, rows)."""
    header = ["attack", "asked", "fools", "L2", "L-inf", "L0", "rho"]
    header += ["gradients", "queries", "seconds", *(short(model) for model in models[1:])]
    rows = []
    for attack, run in runs.items():
        verdicts = judge(models, run.adversarial, references, target)
        cells = [yes_or_no(verdicts[model.name].share_fooled) for model in models]
        cost = ["-", str(int(run.cost[0]))] if attack == "Square" else [str(int(run.cost[0])), "-"]
        row = [attack, goals[attack], cells[0], *size_cells(x, run.adversarial), *cost]
        rows.append([*row, f"{run.seconds:.1f}", *cells[1:]])
    print_table(header, rows)
    return header, rows


def scoreboard_writer(x, runs, floats_runs, rows, path):
    """The scoreboard as a picture: each attack's L2, L-inf (levels) and L0 as saved, and
    for the minimal attacks on floats too (before saving); an attack whose PNG does not
    fool the model is marked so. rows: scoreboard()'s, whose third cell says if it fools."""
    from adversarial.plumbing.figures import bars_writer

    names = [f"{name}: does not fool" if fools == "no" else name for name, _, fools, *_ in rows]
    saved = [sizes(x, run.adversarial) for run in runs.values()]
    floats = [
        sizes(x, floats_runs[name].adversarial) if name in floats_runs else None for name in runs
    ]
    panels = []
    for title, measure, scale in (
        ("L2", "l2", 1),
        ("L-inf (levels)", "linf", 255),
        ("L0", "l0", 1),
    ):
        values = {
            "as saved (PNG)": [getattr(size, measure).item() * scale for size in saved],
            "on floats": [
                math.nan if size is None else getattr(size, measure).item() * scale
                for size in floats
            ],
        }
        panels.append((title, values))
    return bars_writer(panels, names, path)


def quartiles(values):
    """'median [first quartile, third quartile]' of a list, or 'n/a' if it is empty."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3g}"
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{median:.3g} [{q1:.3g}, {q3:.3g}]"


def smallest_per_image(model, x, labels, runs):
    """(N,) the smallest L2 and L-inf among the runs whose saved image fools the model
    (inf where none does, and where the model was wrong already); runs are judged here, on
    the saved images, never trusted."""
    l2 = torch.full((len(x),), math.inf)
    linf = torch.full((len(x),), math.inf)
    for name, run in runs.items():
        fooled = fools(model, run.adversarial, labels, False).cpu() & ~run.already
        size = sizes(x, run.adversarial)
        if name in MINIMAL_L2:
            l2 = torch.where(fooled, torch.minimum(l2, size.l2), l2)
        if name in MINIMAL_LINF:
            linf = torch.where(fooled, torch.minimum(linf, size.linf), linf)
    return l2, linf


def distribution_row(name, n, already, values):
    """A table row: how many judged, already misclassified, fooled, and the quartiles."""
    found = [v for v in values.tolist() if math.isfinite(v)]
    return [name, str(n), str(already), str(len(found)), quartiles(found)]


def minimal_l2_over_photos(models, photos, csv_path, picture):
    """DeepFool's minimal L2 (untargeted, on the grid) on each labelled photo, per model:
    the photos a model already gets wrong are counted, not measured. Writes every photo's
    sizes to csv_path and each model's L2 over its photos to the picture."""
    x = torch.cat([sample_photo(name) for name in photos])
    y = torch.tensor([true_class(name) for name in photos])
    header = ["model", "photos", "already wrong", "fooled", "L2: median [quartiles]", "rho"]
    rows, per_photo, found = [], [], []
    for model in progress(models, "DeepFool on the photos", unit="model"):
        run = run_attack(DeepFool(model, grid=True), x, y)
        fooled = fools(model, run.adversarial, y, False).cpu() & ~run.already
        size = sizes(x, run.adversarial)
        l2 = torch.where(fooled, size.l2, math.inf)
        rho = [r for r, f in zip(size.rho.tolist(), fooled.tolist(), strict=True) if f]
        row = distribution_row(model.name, len(x), int(run.already.sum()), l2)
        rows.append([*row, quartiles(rho)])
        found.append([v for v in l2.tolist() if math.isfinite(v)])
        for i, name in enumerate(photos):
            cells = [f"{size.l2[i]:.4f}", f"{size.linf[i] * 255:.0f}", str(size.l0[i].item())]
            per_photo.append([model.name, name, yes(run.already[i]), yes(fooled[i]), *cells])
    print_table(header, rows)
    photo_header = ["model", "photo", "already wrong", "fooled", "L2", "L-inf levels", "L0"]
    title = "DeepFool L2, untargeted, as saved (model: photos fooled)"
    panel = (title, "L2 (pixels of [0, 1]), log scale", found)
    names = [f"{model.name}: {len(l2)}" for model, l2 in zip(models, found, strict=True)]
    figure = distributions_writer([panel], names, picture)
    write_all({csv_path: csv_writer(photo_header, per_photo), picture: figure})


def compare_on_digits(models, x, y, settings, picture):
    """Per digits model: the smallest L2 (DeepFool L2 or CW-L2) and L-inf (DeepFool L-inf)
    that fools it, on the grid, over the held-out digits it classifies right; each model's
    sizes over its digits drawn in the picture."""
    header = ["model", "digits", "already wrong", "fooled", "median [quartiles]"]
    l2_rows, linf_rows, l2_found, linf_found = [], [], [], []
    for name, model in each(models, "minimal attacks", unit="model"):
        attacks = minimal_attacks(model, settings, targeted=False, grid=True)
        runs = run_attacks({name: attacks[name] for name in MINIMAL_L2 + MINIMAL_LINF}, x, y)
        already = int(runs["DeepFool L2"].already.sum())
        l2, linf = smallest_per_image(model, x, y, runs)
        l2_rows.append(distribution_row(name, len(x), already, l2))
        linf_rows.append(distribution_row(name, len(x), already, linf))
        l2_found.append([v for v in l2.tolist() if math.isfinite(v)])
        linf_found.append([v * 255 for v in linf.tolist() if math.isfinite(v)])
    print("Smallest L2 found (DeepFool L2 or CW-L2, whichever is smaller), as saved:")
    print_table(header, l2_rows)
    print("\nSmallest L-inf found (DeepFool L-inf), as saved:")
    print_table(header, linf_rows)
    panels = [
        ("Smallest L2 found, as saved", "L2 (pixels of [0, 1]), log scale", l2_found),
        ("Smallest L-inf found, as saved", "L-inf (levels of 255), log scale", linf_found),
    ]
    write_all({picture: distributions_writer(panels, list(models), picture)})
