"""Step 6: a defense, measured: save the adversarial image as JPEG, classify that very file.

--sweep tries many qualities, --original shows what the defense costs on the clean image,
--defense tries two other squeezers (Xu et al. 2018): fewer bits and a median filter."""

import utils.startup  # noqa: F401  (first: Ctrl-C while PyTorch loads exits quietly)

from pathlib import Path

import torch

from utils import cli
from utils.defenses import DEFENSES
from utils.errors import UserError
from utils.figures import PLOT_SUFFIXES, curves_writer
from utils.files import check_outputs, check_suffix, write_atomically
from utils.images import load_image_tensor
from utils.labels import label, short_label, top_label
from utils.models import load_model, pick_device, predict
from utils.tables import print_table


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("image", type=Path, help="the adversarial image, any format Pillow reads")
    add("--defense", choices=list(DEFENSES), default="jpeg")
    add("--quality", type=cli.jpeg_quality, help="JPEG quality, 1..100 (default: 75)")
    add("--bits", type=cli.int_in(1, 8), help="bits per channel, 1..8 (default: 5)")
    add("--size", type=cli.int_in(3, 99), help="median filter size, odd, 3..99 (default: 3)")
    add("--sweep", action="store_true", help="try many strengths: print a table, plot it")
    add("--qualities", type=cli.list_of(cli.jpeg_quality), help="--sweep: default 10,20,...,100")
    add("--original", type=Path, help="the clean image: what does the defense cost?")
    add("--output", type=Path, help="the defended image, or the --sweep plot (in outputs/)")
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
    curves = [(f"adversarial: {short_label(c)}", adversarial[1:, c], "o-") for c in (target, true)]
    if args.original is not None:
        header += [f"{args.original.name}: top class", "p(true)"]
        for row, p in zip(rows, probabilities[:, 1], strict=True):
            row += [top_label(p), f"{p[true]:.2f}"]
        curves.append((f"original: {short_label(true)}", probabilities[1:, 1, true], "o--"))
    print_table(header, rows)
    title = f"{defense.name} vs {args.image.name} ({model.name})"
    plot = curves_writer([(title, curves)], strengths, output, defense.axis, "probability")
    write_atomically(output, plot)


if __name__ == "__main__":
    cli.run(main)
