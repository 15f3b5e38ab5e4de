"""Step 14's measurements and report: what does a label-only attacker get for its queries?

`photo_of` gives a targeted attack its start (a labelled photo of the target class);
`sweep_photos` runs HopSkipJump and the white-box minimum (CW-L2, step 13) on the labelled
photos, `save_sweep` reads the distance each photo had reached within each budget and
prints, saves and draws it; `walk_writer` pictures the example after a few budgets;
`compare_on_digits` does the same on step 7's models.
"""

import math
import statistics

import torch

from adversarial.attacks.decision import HopSkipJump, distance_after, model_decision
from adversarial.attacks.minimal import CarliniWagnerL2, fools, sizes
from adversarial.how_small import Settings, quartiles
from adversarial.models import predict
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.figures import amplified_difference, comparison_writer, curves_writer
from adversarial.plumbing.files import write_all
from adversarial.plumbing.labels import short_label
from adversarial.plumbing.progress import each, progress
from adversarial.plumbing.samples import (
    IMAGENET_PHOTOS,
    photos_classified_right,
    sample_photo,
    true_class,
)
from adversarial.plumbing.tables import csv_writer, print_table

# The budgets at which the curves are read (queries per image); the slow run goes on.
BUDGETS = (100, 200, 500, 1000, 2000, 5000, 10_000)
# The shares drawn: photos whose best example is within these L2 distances.
WITHIN = (1.0, 3.0)
CW = Settings()  # step 13's CW-L2: 5 searches over c of 100 steps each


def photo_of(target):
    """(name, (1, 3, 224, 224) pixels) of a labelled photo of the class `target`."""
    for name in IMAGENET_PHOTOS:
        if true_class(name) == target:
            return name, sample_photo(name)
    classes = ", ".join(sorted({short_label(true_class(name)) for name in IMAGENET_PHOTOS}))
    raise UserError(
        f"no labelled photo of {short_label(target)} to start from: pick one of {classes}"
    )


def budgets_up_to(queries):
    return [b for b in BUDGETS if b < queries] + [queries]


def cw_example(model, x, labels, searches, steps, targeted):
    """CW-L2's example on the grid (step 13's white-box minimum), on the CPU."""
    return CarliniWagnerL2(model, searches, steps, targeted=targeted, grid=True)(
        x, labels
    ).adversarial.cpu()


def white_box_l2(model, x, labels, searches, steps, on_step=None):
    """(N,) CW-L2's L2 on the grid (the saved image fools; inf where it does not)."""
    result = CarliniWagnerL2(model, searches, steps, grid=True, on_step=on_step)(x, labels)
    adversarial = result.adversarial.cpu()
    fooled = fools(model, adversarial, labels, False).cpu()
    return torch.where(fooled, sizes(x.cpu(), adversarial).l2, math.inf)


def sweep_photos(model, names, queries, seed, cw_searches, cw_steps):
    """HopSkipJump (L2, untargeted, `queries` per photo) and CW-L2 on the labelled photos
    the model classifies right: ((photos,) bool judged, DecisionResult, (attacked,) CW L2)."""
    x, labels, judged = photos_classified_right(model, names)
    x, labels = x[judged], labels[judged]
    result = HopSkipJump(model_decision(model), queries, seed=seed)(x, labels)
    saved = result.adversarial.to(x.device)  # judged again here, as saved, never trusted
    if not torch.equal(fools(model, saved, labels, False).cpu(), result.success):
        raise RuntimeError("an example the attack kept does not fool the model")
    what, steps = f"CW-L2 (white box), {len(x)} photos", cw_searches * cw_steps
    with progress(total=steps, what=what, unit="step") as bar:
        cw_l2 = white_box_l2(model, x, labels, cw_searches, cw_steps, lambda *_: bar.update())
    return judged.cpu(), result, cw_l2


def medians(traces, budgets):
    """The median, over images, of the best L2 reached within each budget (inf: none yet)."""
    return [statistics.median(distance_after(t, b) for t in traces) for b in budgets]


def shares_within(traces, budgets, radius):
    return [sum(distance_after(t, b) <= radius for t in traces) / len(traces) for b in budgets]


def save_sweep(names, judged, result, cw_l2, budget, title, files):
    """Print the table, save the per-photo CSV and the two panels (median L2, shares)."""
    budgets = budgets_up_to(budget)
    traces = result.trace
    print(f"HopSkipJump (L2), untargeted, the top class only, {budget} queries per photo: {title}")
    print(f"Photos attacked (the model classifies them right): {len(traces)} of {len(names)}")
    rows = []
    for b in budgets:
        found = [distance_after(t, b) for t in traces]
        within = [f"{sum(f <= r for f in found) / len(found):.0%}" for r in WITHIN]
        rows.append([str(b), quartiles([f for f in found if math.isfinite(f)]), *within])
    header = ["queries", "L2: median [quartiles]", *(f"within L2 {r:g}" for r in WITHIN)]
    print_table(header, rows)
    finite = [v for v in cw_l2.tolist() if math.isfinite(v)]
    print(f"White box, CW-L2 (step 13), as saved: {quartiles(finite)} on {len(finite)} photos")
    csv_rows, attacked = [], iter(zip(traces, cw_l2.tolist(), strict=True))
    for name, right in zip(names, judged.tolist(), strict=True):
        trace, cw = next(attacked) if right else ([], math.nan)
        found = [f"{distance_after(trace, b):.4f}" if right else "" for b in budgets]
        csv_rows.append([name, right, *found, f"{cw:.4f}" if right else ""])
    white = statistics.median(cw_l2.tolist())
    l2_panel = [
        ("HopSkipJump, median", medians(traces, budgets), "bo-"),
        ("CW-L2 (white box), median", [white] * len(budgets), "k--"),
    ]
    share_panel = [
        (f"within L2 {r:g}", shares_within(traces, budgets, r), style)
        for r, style in zip(WITHIN, ("go-", "ro-"), strict=True)
    ]
    png, csv = files
    n = len(traces)
    figure = curves_writer(
        [(f"{title}: {n} labelled photos", l2_panel), ("share of the photos", share_panel)],
        budgets,
        png,
        "queries per photo",
        ["L2 of the best adversarial PNG", "share"],
        xscale="log",
        yscales=["log", "linear"],
        percent=True,
    )
    header = ["photo", "judged", *(f"L2 after {b}" for b in budgets), "CW-L2"]
    write_all({png: figure, csv: csv_writer(header, csv_rows)})
    print(f"Saved {png.name} and {csv.name} in {png.parent}")


def walk_writer(x, examples, title):
    """examples: [(caption, adversarial)] (1, 3, H, W): the original, each example, then
    each perturbation, all magnified by the same gain (the largest's), as one picture."""
    gain = min(amplified_difference(x, adversarial)[1] for _, adversarial in examples)
    panels = [(x, "original")]
    for caption, adversarial in examples:
        l2 = sizes(x, adversarial).l2.item()
        panels.append((adversarial, f"{caption}\nL2 {l2:.3g}"))
    for caption, adversarial in examples:
        difference = (0.5 + gain * (adversarial - x)).clamp(0, 1)
        panels.append((difference, f"{caption.splitlines()[0]}\nchange x{gain:.0f}"))
    return comparison_writer(panels, title)


def compare_on_digits(models, x, y, queries, seed, cw_searches, cw_steps):
    """Per digits model: the median L2 HopSkipJump had reached within each budget, over
    the digits the model classifies right, beside CW-L2's (white box, as saved)."""
    budgets = budgets_up_to(queries)
    rows = []
    for name, model in each(models, "digits models", unit="model"):
        right = predict(model, x).argmax(1) == y
        decide = model_decision(model)
        result = HopSkipJump(decide, queries, seed=seed, batch=1000)(x[right], y[right])
        cw = white_box_l2(model, x[right], y[right], cw_searches, cw_steps).tolist()
        found = [f"{m:.3g}" for m in medians(result.trace, budgets)] if right.any() else []
        found += ["n/a"] * (len(budgets) - len(found))
        rows.append([name, str(int(right.sum())), quartiles(cw), *found])
    print("Median L2 of the best adversarial digit (HopSkipJump, L2, untargeted) within each")
    print(f"budget, on those of the first {len(y)} held-out digits each model classifies right:")
    print_table(["model", "digits", "CW-L2 (white box)", *map(str, budgets)], rows)
