"""Step 9's report: the transfer matrix, printed and saved as CSV, and the picture that sums
it up: how often an example fools the model it was made on, another model, and the model
an ensemble left out, against epsilon."""

import statistics

from utils.figures import curves_writer
from utils.files import write_all
from utils.tables import csv_writer, print_table


def save_transfer(shares, names, epsilons, n_photos, files):
    """shares: {(targeted, source model names, epsilon): {model name: share fooled}}."""
    csv_rows, panels = [], []
    for targeted in (False, True):
        mode = "targeted (goldfish)" if targeted else "untargeted"
        rows = [
            [" + ".join(source), f"{epsilon * 255:.3g}/255"]
            + [f"{by_model[name]:.0%}{'*' if name in source else ''}" for name in names]
            for (is_targeted, source, epsilon), by_model in shares.items()
            if is_targeted == targeted
        ]
        print(f"\n{mode.capitalize()}: share of {n_photos} photos that fool each model")
        print_table(["made on", "epsilon", *names], rows)
        csv_rows += [[mode, *row] for row in rows]
        panels.append((mode.capitalize(), summary_curves(shares, targeted, epsilons)))
    print("(* the model the example was made on, or a member of the ensemble)")
    png, csv = files
    write_all(
        {
            png: curves_writer(
                panels, [e * 255 for e in epsilons], png, "epsilon (/255)", "share fooled"
            ),
            csv: csv_writer(["mode", "made on", "epsilon", *names], csv_rows),
        }
    )
    print(f"Saved {png.name} and {csv.name} in {png.parent}")


def summary_curves(shares, targeted, epsilons):
    """Mean share fooled against epsilon: on the source itself, on another model from a
    single source, and on the model a leave-one-out ensemble left out."""
    white_box, other, left_out = "made on it", "another model", "the model an ensemble left out"
    kinds = {white_box: [], other: [], left_out: []}
    for epsilon in epsilons:
        cells = {kind: [] for kind in kinds}
        for (is_targeted, source, eps), by_model in shares.items():
            if is_targeted != targeted or eps != epsilon:
                continue
            for name, share in by_model.items():
                kind = white_box if name in source else other if len(source) == 1 else left_out
                cells[kind].append(share)
        for kind, values in cells.items():
            kinds[kind].append(statistics.mean(values) if values else float("nan"))
    styles = ("ko-", "bo-", "ro-")
    return [
        (kind, values, style) for (kind, values), style in zip(kinds.items(), styles, strict=True)
    ]
