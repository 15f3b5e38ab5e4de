"""Step 9's measurement and report: does an example made on some models fool the others?

`judge` classifies examples with every model; `save_transfer` prints the transfer matrix,
saves it as CSV, and draws the picture that sums it up: how often an example fools the
model it was made on, another model, and the model an ensemble left out, against epsilon,
beside random noise of the same size.
"""

import statistics
from typing import NamedTuple

from adversarial.models import predict
from adversarial.plumbing.figures import curves_writer
from adversarial.plumbing.files import write_all
from adversarial.plumbing.tables import csv_writer, print_table

RANDOM = "random signs"  # the baseline's name in the tables


class Verdict(NamedTuple):
    share_fooled: float  # of the photos
    median_rank: float  # of the target class among the 1000 (1: the top class)


def judge(models, x_adversarial, clean, target=None):
    """{model name: Verdict}. Targeted: fooled = the model sees `target`; untargeted:
    fooled = the model's class changed from its own class of the clean photo, clean[name]."""
    verdicts = {}
    for model in models:
        p = predict(model, x_adversarial)
        predicted = p.argmax(1)
        if target is None:
            fooled = predicted != clean[model.name]
            rank = float("nan")
        else:
            fooled = predicted == target
            ranks = (p > p[:, target : target + 1]).sum(1) + 1
            rank = statistics.median(ranks.tolist())
        verdicts[model.name] = Verdict(fooled.float().mean().item(), rank)
    return verdicts


def save_transfer(verdicts, names, epsilons, n_photos, target_name, files):
    """verdicts: {(targeted, source model names, epsilon): {model name: Verdict}}."""
    csv_rows, panels = [], []
    for targeted in (False, True):
        mode = f"targeted ({target_name})" if targeted else "untargeted"
        rows = []
        for (is_targeted, source, epsilon), by_model in verdicts.items():
            if is_targeted != targeted:
                continue
            cells = []
            for name in names:
                verdict, made_on_it = by_model[name], name in source
                cell = f"{verdict.share_fooled:.0%}{'*' if made_on_it else ''}"
                cells.append(f"{cell} ({verdict.median_rank:g})" if targeted else cell)
                csv_rows.append(
                    [
                        mode,
                        " + ".join(source),
                        f"{epsilon * 255:.3g}/255",
                        name,
                        f"{verdict.share_fooled:.3f}",
                        f"{verdict.median_rank:g}",
                        made_on_it,
                    ]
                )
            rows.append([" + ".join(source), f"{epsilon * 255:.3g}/255", *cells])
        what = f"share of {n_photos} photos that fool each model"
        if targeted:
            what += f" (median rank of {target_name} among the 1000 classes)"
        print(f"\n{mode.capitalize()}: {what}")
        print_table(["made on", "epsilon", *names], rows)
        panels.append((mode.capitalize(), summary_curves(verdicts, targeted, epsilons)))
    print("(* the model the example was made on, or a member of the ensemble)")
    png, csv = files
    header = ["mode", "made on", "epsilon", "model", "share fooled", "median target rank"]
    x_values = [epsilon * 255 for epsilon in epsilons]
    write_all(
        {
            png: curves_writer(panels, x_values, png, "epsilon (/255)", "share fooled"),
            csv: csv_writer([*header, "made on it"], csv_rows),
        }
    )
    print(f"Saved {png.name} and {csv.name} in {png.parent}")


def summary_curves(verdicts, targeted, epsilons):
    """Mean share fooled against epsilon: on the source itself, on another model from a
    single source, on the model a leave-one-out ensemble left out, and under random noise."""
    white_box, other, left_out = "made on it", "another model", "the model an ensemble left out"
    noise = "random signs, any model"
    kinds = {white_box: [], other: [], left_out: [], noise: []}
    for epsilon in epsilons:
        cells = {kind: [] for kind in kinds}
        for (is_targeted, source, eps), by_model in verdicts.items():
            if is_targeted != targeted or eps != epsilon:
                continue
            for name, verdict in by_model.items():
                if source == (RANDOM,):
                    kind = noise
                elif name in source:
                    kind = white_box
                else:
                    kind = other if len(source) == 1 else left_out
                cells[kind].append(verdict.share_fooled)
        for kind, values in cells.items():
            kinds[kind].append(statistics.mean(values) if values else float("nan"))
    styles = ("ko-", "bo-", "ro-", "k:")
    return [
        (kind, values, style) for (kind, values), style in zip(kinds.items(), styles, strict=True)
    ]
