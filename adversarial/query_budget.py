"""Step 10's measurement and report: how many queries does a score-only attack need?

`success_curve` reads, from the queries each photo took, the share fooled within each
budget; `save_sweep` prints the table, saves the per-photo CSV, and draws the curves beside
the paper's; `compare_on_digits` sets the Square Attack beside PGD on step 7's models.
"""

import itertools
import math
import statistics

import torch

from adversarial.attacks import PGD, Square, model_query
from adversarial.plumbing.figures import Curve, curves_writer
from adversarial.plumbing.files import write_all
from adversarial.plumbing.progress import each, progress
from adversarial.plumbing.samples import photos_classified_right
from adversarial.plumbing.tables import csv_writer, epsilon_text, plural, print_table

# The budgets at which the curves are read (queries per image, the image itself included).
BUDGETS = (2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)

# The paper's curve (Andriushchenko et al. 2020), read from max-andr/square-attack's saved
# metrics for ResNet-50 at epsilon 0.05 with a 10,000-query budget ("metrics/2019-11-10
# 15:57:14 model=pt_resnet dataset=imagenet n_ex=1000 eps=12.75 p=0.05 n_iter=10000"): the
# share of the 763 correctly classified images fooled within q queries, 1 - acc_corr. The
# paper does not count the clean image's query; this course does, so the paper's q - 1
# queries are drawn at q here.
PAPER_RESNET50 = {
    2: 0.358,  # the stripes alone
    5: 0.410,
    10: 0.485,
    20: 0.570,
    50: 0.724,
    100: 0.823,
    200: 0.910,
    500: 0.970,
    1000: 0.988,
    2000: 1.0,
    5000: 1.0,
    10_000: 1.0,
}
PAPER_LABEL = "paper: ResNet-50, 12.75/255, float images"


def success_curve(result, budgets):
    """The share of the attacked images fooled within each budget of queries."""
    fooled_within = [
        (result.success & (result.steps <= budget)).float().mean() for budget in budgets
    ]
    return [share.item() for share in fooled_within]


def success_steps(result, start, budget):
    """The share fooled within q queries for every q from `start` to `budget`, exactly: the
    (x, y) of a step function that rises at each image's query count."""
    n = len(result.success)
    queries = sorted(result.steps[result.success].tolist())
    first = sum(q <= start for q in queries)
    later = [q for q in queries if q > start]
    x = [start, *later, budget]
    y = [first / n, *((first + i + 1) / n for i in range(len(later))), len(queries) / n]
    return x, y


def query_figures(result):
    """(mean, median) queries of the images fooled, as the paper reports them (NaN if none)."""
    queries = result.steps[result.success].tolist()
    if not queries:
        return float("nan"), float("nan")
    return statistics.mean(queries), statistics.median(queries)


def sweep_photos(model, names, epsilons, queries, p_init, seed):
    """Square, untargeted, at every epsilon, on the labelled photos `names` that the model
    classifies right (only these can be fooled): ({epsilon: AttackResult}, (photos,) bool
    judged)."""
    x, labels, judged = photos_classified_right(model, names)
    query = model_query(model)
    results = {
        epsilon: Square(query, epsilon, queries, p_init, seed=seed)(x[judged], labels[judged])
        for epsilon in progress(epsilons, f"Square on {int(judged.sum())} photos", "epsilon")
    }
    return results, judged.cpu()


def save_sweep(results, names, judged, budget, title, files):
    """results: {epsilon: AttackResult over the photos judged}; names: every photo's name;
    judged: (photos,) bool, the photos the model classifies right (the ones attacked)."""
    rows, csv_rows, curves = [], [], []
    budgets = [b for b in BUDGETS if b <= budget] or [budget]
    styles = itertools.cycle(("bo-", "go-", "ro-", "mo-", "co-", "yo-"))
    for (epsilon, result), style in zip(results.items(), styles, strict=False):
        mean, median = query_figures(result)
        rows.append(
            [
                epsilon_text(epsilon),
                f"{int(epsilon * 255 + 1e-3)}",
                f"{result.success.float().mean():.0%}",
                "-" if math.isnan(mean) else f"{mean:.0f}",
                "-" if math.isnan(median) else f"{median:g}",
            ]
        )
        x, y = success_steps(result, budgets[0], budget)
        curves.append(
            Curve(
                f"epsilon {epsilon_text(epsilon, levels=True)}", y, f"{style[0]}-", x=x, steps=True
            )
        )
        attacked = iter(zip(result.success.tolist(), result.steps.tolist(), strict=True))
        for name, right in zip(names, judged.tolist(), strict=True):
            success, queries = next(attacked) if right else ("", "")
            csv_rows.append([f"{epsilon * 255:.4g}/255", name, right, success, queries])
    paper = [PAPER_RESNET50[b] if b in PAPER_RESNET50 else float("nan") for b in budgets]
    curves.append((PAPER_LABEL, paper, "ko:"))  # read at these budgets only
    print(f"Square Attack, untargeted, {plural(budget, 'query')} per photo at most: {title}")
    print(f"Photos attacked (the model classifies them right): {int(judged.sum())} of {len(names)}")
    header = ["epsilon", "levels", "fooled", "mean queries", "median queries"]
    print_table(header, rows)
    print("(queries of the photos fooled, the photo itself included; levels: the 8-bit change)")
    png, csv = files
    write_all(
        {
            png: curves_writer(
                [(f"{title}: Square Attack on {int(judged.sum())} labelled photos", curves)],
                budgets,
                png,
                "queries per photo",
                "share fooled",
                xscale="log",
                percent=True,
            ),
            csv: csv_writer(["epsilon", "photo", "judged", "fooled", "queries"], csv_rows),
        }
    )
    print(f"Saved {png.name} and {csv.name} in {png.parent}")


def compare_on_digits(models, x, y, epsilons, pgd, square):
    """Accuracy of each digits model under PGD (white-box; a digit counts as lost when any
    of its restarts fools it) and under Square (score-only), and where Square does
    better: a warning sign of gradient masking. pgd: {"steps", "restarts"}; square:
    {"queries", "p_init", "seed"}, Square's settings."""
    restarts = pgd["restarts"]
    rows, warnings = [], []
    pgd_name = "PGD" if restarts == 1 else f"PGD x{restarts}"
    for epsilon in epsilons:
        row = [epsilon_text(epsilon)]
        for name, model in each(models, f"epsilon {epsilon_text(epsilon)}", unit="model"):
            # A digit the model gets wrong is lost to both: Square's first query is the
            # digit itself, PGD's a random point near it.
            with torch.no_grad():
                fooled = model(x).argmax(1) != y
            for _ in range(restarts):  # each run from its own random start
                fooled |= PGD(model, epsilon, pgd["steps"], targeted=False)(x, y).success
            white_box = 1 - fooled.float().mean().item()
            attack = Square(model_query(model), epsilon, **square)
            score_only = 1 - attack(x, y).success.float().mean().item()
            row += [f"{white_box:.1%}", f"{score_only:.1%}"]
            if score_only < white_box:
                at = f"{name} at {epsilon_text(epsilon)}"
                warnings.append(f"{at}: Square {score_only:.1%} < {pgd_name} {white_box:.1%}")
        rows.append(row)
    columns = [f"{name} vs {attack}" for name in models for attack in (pgd_name, "Square")]
    print(f"Accuracy on the {len(y)} held-out digits under attack:")
    print_table(["epsilon", *columns], rows)
    if warnings:
        print("Where the score-only attack did better than the white-box one (a large gap is")
        print("the sign of gradient masking; a small one, that PGD's budget is not the last word):")
        for warning in warnings:
            print(f"  {warning}")
    else:
        print("PGD did at least as well as Square everywhere: no sign of gradient masking.")
