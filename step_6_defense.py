"""Step 6: a defense, measured: compress the adversarial image as JPEG and classify it again.

The tutorial saved its goldfish-corgi as a JPEG (Pillow's default quality, 75) and got
its corgi back. This script saves the compressed file and classifies exactly that file;
--sweep tries many qualities in one batch, --original shows what the defense costs on
the clean image, and --defense tries two other squeezers (Xu et al. 2018): fewer bits
per channel, and a median filter.
"""

from pathlib import Path

import torch

from utils.cli import (
    ArgumentParser,
    UserError,
    add_model_arguments,
    check_not_input,
    check_writable_dir,
    jpeg_quality,
    list_of,
    run,
    write_atomically,
)
from utils.defenses import DEFENSES
from utils.images import load_image_tensor
from utils.labels import label, short_label
from utils.models import load_model, predict

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("image", type=Path, help="the adversarial image, any format Pillow reads")
    parser.add_argument("--defense", choices=list(DEFENSES), default="jpeg")
    parser.add_argument(
        "--quality",
        type=jpeg_quality,
        help="JPEG quality, 1..100 (default: 75, as in the tutorial)",
    )
    parser.add_argument("--bits", type=int, help="bits per channel, 1..8 (default: 5)")
    parser.add_argument("--size", type=int, help="median filter size, odd (default: 3)")
    parser.add_argument(
        "--sweep", action="store_true", help="try many strengths: print a table, plot it"
    )
    parser.add_argument(
        "--qualities",
        type=list_of(jpeg_quality),
        help="JPEG qualities to sweep (default: 10,20,...,100)",
    )
    parser.add_argument(
        "--original", type=Path, help="the clean image: what does the defense cost?"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="the defended image (default: outputs/adversarial.jpg, or "
        "outputs/adversarial_DEFENSE.png) or, with --sweep, the plot (outputs/DEFENSE_sweep.png)",
    )
    add_model_arguments(parser)
    args = parser.parse_args()

    defense = DEFENSES[args.defense]
    strengths = check_strengths(args, defense)
    output = args.output or default_output(args)
    check_output(output, defense, args.sweep, [args.image, args.original])

    x = load_image_tensor(args.image)
    images = [x] if args.original is None else [x, load_image_tensor(args.original)]
    model = load_model(args.model, args.weights)

    if args.sweep:
        sweep(args, defense, strengths, torch.cat(images), model, output)
        return
    (strength,) = strengths
    # The file written is what gets classified: for JPEG, the very bytes on disk.
    squeezed = [defense.save(x, output, strength)]
    if args.original is not None:
        squeezed.append(defense.apply(images[1], strength))
    probabilities = predict(model, torch.cat(images + squeezed)).view(2, len(images), -1)
    after = f"{defense.name} ({defense.parameter} {strength})"
    for i, name in enumerate(["Prediction", "Original"][: len(images)]):
        print(f"{name} before {defense.name}: {top(probabilities[0, i])}")
        print(f"{name} after {after}: {top(probabilities[1, i])}")


def check_strengths(args, defense):
    """The strengths to try, checked before any work; options of other defenses are errors."""
    for name, other in DEFENSES.items():
        if name != args.defense and getattr(args, other.parameter) is not None:
            raise UserError(f"--{other.parameter} is for --defense {name}")
    chosen = getattr(args, defense.parameter)
    if args.sweep and chosen is not None:
        hint = " (use --qualities)" if args.defense == "jpeg" else ""
        raise UserError(f"--sweep tries several values of --{defense.parameter}{hint}")
    if args.qualities is not None and not (args.sweep and args.defense == "jpeg"):
        raise UserError("--qualities is for --sweep with --defense jpeg")
    if args.sweep:
        strengths = args.qualities or defense.sweep
    else:
        strengths = (defense.default if chosen is None else chosen,)
    for strength in strengths:
        defense.check(strength)
    return strengths


def default_output(args):
    if args.sweep:
        return Path("outputs") / f"{args.defense}_sweep.png"
    if args.defense == "jpeg":
        return Path("outputs") / "adversarial.jpg"
    return Path("outputs") / f"adversarial_{args.defense}.png"


def check_output(path, defense, sweep, inputs):
    """Fail before any work if the defended image (or the plot) cannot be saved as asked."""
    suffixes = PLOT_SUFFIXES if sweep else defense.suffixes
    if path.suffix.lower() not in suffixes:
        what = "the plot" if sweep else f"the image after {defense.name}"
        raise UserError(f"{path}: save {what} as {' or '.join(suffixes)}")
    check_not_input(path, inputs)
    check_writable_dir(path.parent)


def top(probabilities):
    index = probabilities.argmax()
    return f"{label(index)} ({probabilities[index]:.2f})"


def print_table(rows):
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def sweep(args, defense, strengths, images, model, output):
    """One batch: the images as given, then squeezed at every strength."""
    views = [images] + [defense.apply(images, strength) for strength in strengths]
    probabilities = predict(model, torch.cat(views)).view(len(views), len(images), -1)
    adversarial = probabilities[:, 0]  # (1 + len(strengths), 1000)
    target = int(adversarial[0].argmax())
    if args.original is None:
        # Without the clean image, a guess: the runner-up is usually what the attack hid.
        true = int(adversarial[0].topk(2).indices[1])
        true_source = f"runner-up of {args.image}; pass --original for the clean image's top"
    else:
        true = int(probabilities[0, 1].argmax())
        true_source = f"top class of {args.original}"

    print(f"{defense.name} sweep, model {model.name}")
    print(f"target class: {label(target)} (top class of {args.image} before {defense.name})")
    print(f"true class:   {label(true)} ({true_source})")
    table = [[defense.parameter, f"{args.image.name}: top class", "p(target)", "p(true)"]]
    for strength, p in zip(["none", *strengths], adversarial, strict=True):
        table.append([str(strength), top(p), f"{p[target]:.2f}", f"{p[true]:.2f}"])
    if args.original is not None:
        table[0] += [f"{args.original.name}: top class", "p(true)"]
        for row, p in zip(table[1:], probabilities[:, 1], strict=True):
            row += [top(p), f"{p[true]:.2f}"]
    print_table(table)

    curves = [
        (f"adversarial: {short_label(target)}", adversarial[1:, target], "o-"),
        (f"adversarial: {short_label(true)}", adversarial[1:, true], "o-"),
    ]
    if args.original is not None:
        curves.append((f"original: {short_label(true)}", probabilities[1:, 1, true], "o--"))
    title = f"{defense.name} vs {args.image.name} ({model.name})"
    plot(curves, strengths, defense.axis, title, output)


def plot(curves, strengths, xlabel, title, output):
    """Probability against defense strength, one line per (label, values, style) curve."""
    from matplotlib.figure import Figure  # imported here: only the sweep draws

    figure = Figure(figsize=(6.4, 4), layout="constrained")
    axes = figure.subplots()
    for name, values, style in curves:
        axes.plot(strengths, values, style, label=name)
    axes.set(xlabel=xlabel, ylabel="probability", ylim=(0, 1), xticks=strengths, title=title)
    axes.legend()
    write_atomically(output, lambda tmp: figure.savefig(tmp, format=output.suffix[1:].lower()))


if __name__ == "__main__":
    run(main)
