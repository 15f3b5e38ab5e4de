"""Step 9's measurement and report: does an example made on some models fool the others?

`references` says what each model should see in each clean photo, `judge` classifies
examples with every model; `save_transfer` prints the transfer matrix, saves it as CSV, and
sums it up in a table and a picture: how often an example fools the model it was made on,
another model of the same family or of another family, and the model an ensemble left out,
against epsilon, beside random noise of the same size.
"""

import math
import statistics
from typing import NamedTuple

import torch

from adversarial.models import FAMILIES, predict
from adversarial.plumbing.figures import curves_writer
from adversarial.plumbing.files import write_all
from adversarial.plumbing.tables import csv_writer, epsilon_text, print_table

RANDOM = "random signs"  # the baseline's name in the tables


class Reference(NamedTuple):
    """What one model should see in each clean photo, and the photos it is judged on."""

    classes: torch.Tensor  # the photo's true class; where none is known, the model's own
    judged: torch.Tensor  # True where the model's clean class is that class


class Verdict(NamedTuple):
    share_fooled: float  # of the photos judged (NaN when there are none)
    median_rank: float  # of the target class among the 1000 (1: the top class)
    photos: int  # judged: those the model classifies right when clean


def references(models, x, true_classes):
    """{model name: Reference} for the clean photos x; true_classes: per photo, its class
    index, or None where it is not known (the model's own clean class stands in)."""
    known = torch.tensor([c is not None for c in true_classes])
    truth = torch.tensor([-1 if c is None else c for c in true_classes])
    by_model = {}
    for model in models:
        clean = predict(model, x).argmax(1)
        classes = torch.where(known, truth, clean)
        by_model[model.name] = Reference(classes, clean == classes)
    return by_model


def judge(models, x_adversarial, references, target=None):
    """{model name: Verdict}, each model judged on the photos it classifies right when clean
    (an example cannot fool a model into a mistake it already makes). Targeted: fooled = the
    model sees `target`; untargeted: fooled = it no longer sees the photo's class."""
    verdicts = {}
    for model in models:
        reference = references[model.name]
        p = predict(model, x_adversarial)[reference.judged]
        predicted = p.argmax(1)
        if target is None:
            fooled = predicted != reference.classes[reference.judged]
            rank = math.nan
        else:
            fooled = predicted == target
            ranks = ((p > p[:, target : target + 1]).sum(1) + 1).tolist()
            rank = statistics.median(ranks) if ranks else math.nan
        verdicts[model.name] = Verdict(fooled.float().mean().item(), rank, len(p))
    return verdicts


def percent(share):
    return "n/a" if math.isnan(share) else f"{share:.0%}"


def save_transfer(verdicts, names, epsilons, n_photos, target_name, files):
    """verdicts: {(targeted, source model names, epsilon): {model name: Verdict}}."""
    judged = next(iter(verdicts.values()))  # the same photos for every source
    counts = ", ".join(f"{name} {judged[name].photos}" for name in names)
    print(f"Photos each model classifies right, of {n_photos} (only these are judged): {counts}")
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
                cell = f"{percent(verdict.share_fooled)}{'*' if made_on_it else ''}"
                cells.append(f"{cell} ({verdict.median_rank:g})" if targeted else cell)
                csv_rows.append(
                    [
                        mode,
                        " + ".join(source),
                        f"{epsilon * 255:.3g}/255",
                        name,
                        verdict.photos,
                        f"{verdict.share_fooled:.3f}",
                        f"{verdict.median_rank:g}",
                        made_on_it,
                    ]
                )
            rows.append([" + ".join(source), epsilon_text(epsilon), *cells])
        what = "share of the photos judged that fool each model"
        if targeted:
            what += f" (median rank of {target_name} among the 1000 classes)"
        print(f"\n{mode.capitalize()}: {what}")
        print_table(["made on", "epsilon", *names], rows)
        curves = summary_curves(verdicts, targeted, epsilons)
        print(f"\n{mode.capitalize()}, in sum: mean share fooled")
        epsilon_names = [epsilon_text(epsilon) for epsilon in epsilons]
        print_table(["", *epsilon_names], [[k, *map(percent, v)] for k, v, _ in curves])
        panels.append((mode.capitalize(), curves))
    print("(* the model the example was made on, or a member of the ensemble)")
    png, csv = files
    header = ["mode", "made on", "epsilon", "model", "photos judged", "share fooled"]
    x_values = [epsilon * 255 for epsilon in epsilons]
    write_all(
        {
            png: curves_writer(
                panels, x_values, png, "epsilon (/255)", "share fooled", percent=True
            ),
            csv: csv_writer([*header, "median target rank", "made on it"], csv_rows),
        }
    )
    print(f"Saved {png.name} and {csv.name} in {png.parent}")


def summary_curves(verdicts, targeted, epsilons):
    """Mean share fooled against epsilon: on the source itself; from a single source, on
    another model of its family and on a model of another family; on the model a
    leave-one-out ensemble left out; and under random noise."""
    white_box, noise = "made on it", "random signs, any model"
    same_family, other_family = "another model, same family", "a model of another family"
    left_out = "the model an ensemble left out"
    kinds = {white_box: [], same_family: [], other_family: [], left_out: [], noise: []}
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
                elif len(source) > 1:
                    kind = left_out
                else:
                    kind = same_family if FAMILIES[name] == FAMILIES[source[0]] else other_family
                if verdict.photos:
                    cells[kind].append(verdict.share_fooled)
        for kind, values in cells.items():
            kinds[kind].append(statistics.mean(values) if values else math.nan)
    styles = ("ko-", "bo-", "go-", "ro-", "k:")
    return [
        (kind, values, style) for (kind, values), style in zip(kinds.items(), styles, strict=True)
    ]
