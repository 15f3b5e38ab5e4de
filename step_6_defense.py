"""Step 6: a defense, measured: save the adversarial image as JPEG, classify that very file.

--sweep tries many qualities, --original shows what the defense costs on the clean image,
--defense tries two other squeezers (Xu et al. 2018): fewer bits and a median filter."""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial.defenses import DEFENSES
from adversarial.models import load_model, pick_device, predict
from adversarial.plumbing import cli
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.figures import PLOT_SUFFIXES, curves_writer
from adversarial.plumbing.files import check_outputs, check_suffix, write_atomically
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import label, short_label, top_label
from adversarial.plumbing.tables import print_table


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("image", type=Path, help="the adversarial image, any format Pillow reads")
    parser.add_argument("--defense", choices=list(DEFENSES), default="jpeg", help="which")
    parser.add_argument(
        "--quality", type=cli.jpeg_quality, help="JPEG quality, 1..100 (default: 75)"
    )
    parser.add_argument("--bits", type=cli.int_in(1, 8), help="bits per channel, 1..8 (default: 5)")
    parser.add_argument(
        "--size", type=cli.int_in(3, 99), help="median filter size, odd, 3..99 (default: 3)"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="try many strengths: print a table, plot it"
    )
    parser.add_argument(
        "--qualities", type=cli.list_of(cli.jpeg_quality), help="--sweep: default 10,20,...,100"
    )
    parser.add_argument(
        "--original", type=Path, help="the clean image: what does the defense cost?"
    )
    parser.add_argument(
        "--output", type=Path, help="the defended image, or the --sweep plot (in outputs/)"
    )
    cli.add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    defense = DEFENSES[args.defense]
    strengths = check_strengths(args, defense)
    default = f"{args.defense}_sweep.png" if args.sweep else defense.default_file
    output = args.output or Path("outputs") / default
    what = "the plot" if args.sweep else f"the image after {defense.name}"
    check_suffix(output, PLOT_SUFFIXES if args.sweep else defense.suffixes, what)
    check_outputs([output], [args.image, args.original, args.weights])
    images = [load_image_tensor(p) for p in (args.image, args.original) if p is not None]
    model = load_model(args.model, args.weights, pick_device(args.device))
    if args.sweep:
        return sweep(args, defense, strengths, torch.cat(images), model, output)

    (strength,) = strengths
    # The file written is what gets classified: for JPEG, the very bytes on disk.
    squeezed = [defense.save(images[0], output, strength)]
    if args.original is not None:
        squeezed.append(defense.apply(images[1], strength))
    probabilities = predict(model, torch.cat(images + squeezed)).view(2, len(images), -1)
    for i, name in enumerate(["Prediction", "Original"][: len(images)]):
        print(f"{name} before {defense.name}: {top_label(probabilities[0, i])}")
        print(
            f"{name} after {defense.name} ({defense.parameter} {strength}): "
            f"{top_label(probabilities[1, i])}"
        )


def check_strengths(args, defense):
    """The strengths to try, checked before any work; options of other defenses are errors."""
    for name, other in DEFENSES.items():
        if name != args.defense and getattr(args, other.parameter) is not None:
            raise UserError(f"--{other.parameter} is for --defense {name}")
    if args.qualities is not None and not (args.sweep and args.defense == "jpeg"):
        raise UserError("--qualities is for --sweep with --defense jpeg")
    chosen = getattr(args, defense.parameter)
    if args.sweep and chosen is not None:
        raise UserError(f"--sweep tries several values of --{defense.parameter}")
    strengths = (args.qualities or defense.sweep) if args.sweep else (chosen or defense.default,)
    for strength in strengths:
        defense.check(strength)
    return strengths


def sweep(args, defense, strengths, images, model, output):
    """One batch: the images as given, then squeezed at every strength; a table and a plot."""
    views = [images] + [defense.apply(images, strength) for strength in strengths]
    probabilities = predict(model, torch.cat(views)).view(len(views), len(images), -1)
    adversarial = probabilities[:, 0]  # (1 + len(strengths), 1000)
    target = int(adversarial[0].argmax())
    if args.original is None:  # a guess: the runner-up is usually what the attack hid
        true = int(adversarial[0].topk(2).indices[1])
        source = f"runner-up of {args.image}; pass --original for the clean image's top"
    else:
        true, source = int(probabilities[0, 1].argmax()), f"top class of {args.original}"
    print(f"{defense.name} sweep, model {model.name}")
    print(f"target class: {label(target)} (top class of {args.image} before {defense.name})")
    print(f"true class:   {label(true)} ({source})")
    header = [defense.parameter, f"{args.image.name}: top class", "p(target)", "p(true)"]
    rows = [
        [s, top_label(p), f"{p[target]:.2f}", f"{p[true]:.2f}"]
        for s, p in zip(["none", *strengths], adversarial, strict=True)
    ]
    # Each curve against the strength, and its value with no defense as a dotted line.
    curves = [
        (f"adversarial: {short_label(c)}", adversarial[1:, c], style, adversarial[0, c])
        for c, style in ((target, "ro-"), (true, "bo-"))
    ]
    if args.original is not None:
        header += [f"{args.original.name}: top class", "p(true)"]
        for row, p in zip(rows, probabilities[:, 1], strict=True):
            row += [top_label(p), f"{p[true]:.2f}"]
        clean = probabilities[:, 1, true]
        curves.append((f"original: {short_label(true)}", clean[1:], "go--", clean[0]))
    print_table(header, rows)
    title = f"{defense.name} vs {args.image.name} ({model.name})"
    plot = curves_writer(
        [(title, curves)],
        strengths,
        output,
        defense.axis,
        "probability",
        baseline=f"without {defense.name}",
    )
    write_atomically(output, plot)
    print(f"Saved the plot to {output} (dotted: without {defense.name})")


if __name__ == "__main__":
    run(main)
