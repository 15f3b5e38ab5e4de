"""Step 9: attacks without the model: does an adversarial image fool networks it never saw?

Classify one image with every model at hand; or, with --sweep, craft examples on each model
and on each leave-one-out ensemble over labelled ImageNet photos, and measure how often they
fool each model, within a family and across families (Szegedy et al. 2014; Liu et al. 2017:
ensembles transfer better)."""

from adversarial.plumbing.script import run

import itertools
from pathlib import Path

import torch

from adversarial.attacks import PGD, attack_labels, random_signs
from adversarial.models import MODELS, load_models, models_at_hand, pick_device, predict
from adversarial.plumbing import cli
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_outputs
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import label, short_label, top_label
from adversarial.plumbing.outputs import provenance
from adversarial.plumbing.progress import progress
from adversarial.plumbing.samples import PHOTOS, sample_photo, true_class
from adversarial.plumbing.tables import print_table
from adversarial.transfer import RANDOM, judge, references, save_transfer

GOLDFISH = 1
# Labelled photos that every offline model classifies right (the README's table).
DEFAULT_PHOTOS = "imagenet_01,imagenet_04,imagenet_15"


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("image", nargs="?", type=Path, help="an adversarial image (step 5's PNG)")
    parser.add_argument(
        "--original", type=Path, help="the clean image: untargeted, fooled = the class changed"
    )
    names = cli.one_of([name for name in MODELS if name != "auto"])
    parser.add_argument(
        "--models", type=cli.list_of(names, keep_order=True), help="default: all at hand"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="craft on each source, test on every model"
    )
    parser.add_argument(
        "--epsilons", type=cli.list_of(cli.pixel_amount), default="2/255,4/255,8/255", help="sweep"
    )
    parser.add_argument(
        "--steps", type=cli.int_in(1, 1000), default=10, help="PGD steps, 1..1000 (default 10)"
    )
    photos = cli.list_of(cli.one_of(list(PHOTOS)), keep_order=True)
    parser.add_argument(
        "--photos", type=photos, default=DEFAULT_PHOTOS, help=f"default: {DEFAULT_PHOTOS}"
    )
    parser.add_argument(
        "--seed", type=cli.int_in(0, 2**63 - 1), default=0, help="PGD's and the noise's seed"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs"), help="the sweep's table and plot"
    )
    parser.add_argument(
        "--weights", type=Path, help="ResNet18's state_dict file: ResNet18 joins the models"
    )
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.sweep == (args.image is not None):
        raise UserError("give one adversarial image, or --sweep")
    if args.sweep and args.original:
        raise UserError("--original is for one image; the sweep makes its own examples")
    files = [args.output_dir / "transfer.png", args.output_dir / "transfer.csv"]
    check_outputs(files if args.sweep else [], [args.image, args.original, args.weights])
    images = [] if args.sweep else [args.image, *([args.original] if args.original else [])]
    x = [load_image_tensor(path) for path in images]  # a bad file fails before the models load
    names = args.models or models_at_hand(args.weights)
    if args.weights and "resnet18" not in names:
        raise UserError("--weights is ResNet18's: add resnet18 to --models")
    models = load_models(names, args.weights, pick_device(args.device))
    if args.sweep:
        return sweep(args, models, files)

    made_on, target, _ = provenance(args.image)
    print(f"Made on: {', '.join(made_on or ['unknown (not a PNG from step 5)'])}")
    print(f"Target: {'none (untargeted)' if target is None else label(target)}")
    rows = []
    for model in models:
        p = predict(model, torch.cat(x))
        top = int(p[0].argmax())
        if target is not None:  # targeted: fooled when it sees the target
            fooled = "yes" if top == target else "no"
        elif args.original:  # untargeted: fooled when its own class of the clean image changed
            fooled = "yes" if top != int(p[1].argmax()) else "no"
        else:  # each model's clean class is needed, and only --original gives it
            fooled = "?"
        p_target = "" if target is None else f"{p[0, target]:.2f}"
        made = "yes" if model.name in (made_on or []) else ""
        rows.append([model.name, top_label(p[0]), p_target, fooled, made])
    print_table(["model", "top class", "p(target)", "fooled", "made on it"], rows)
    if target is None and not args.original:
        print("(untargeted: pass --original CLEAN to judge each model against its own class)")


def sweep(args, models, files):
    """Targeted (goldfish) and untargeted examples from every source, on every photo, and
    random signs of the same size as the baseline. Each model is judged on the photos it
    classifies right: untargeted, fooled = it no longer sees the true class (for a photo
    without a label, its own class of the clean photo)."""
    x = torch.cat([sample_photo(name) for name in args.photos])
    expected = references(models, x, [true_class(name) for name in args.photos])
    sources = [[model] for model in models]
    if len(models) > 2:  # leave-one-out ensembles: every model but one
        sources += [[m for m in models if m is not held_out] for held_out in models]
    verdicts = {}  # (targeted, source names, epsilon) -> {model name: Verdict}
    settings = list(itertools.product((False, True), sources, args.epsilons))
    for targeted, source, epsilon in progress(settings, "crafting", unit="setting"):
        target = GOLDFISH if targeted else None
        labels = attack_labels(expected[source[0].name].classes, target)
        # The whole budget (no early stop): an example just across the line rarely transfers.
        attack = PGD(
            source, epsilon, args.steps, seed=args.seed, targeted=targeted, early_stop=False
        )
        x_adversarial = attack(x, labels).adversarial
        source_names = tuple(model.name for model in source)
        verdicts[targeted, source_names, epsilon] = judge(models, x_adversarial, expected, target)
    for targeted, epsilon in itertools.product((False, True), args.epsilons):
        noise = random_signs(x, epsilon, args.seed)
        target = GOLDFISH if targeted else None
        verdicts[targeted, (RANDOM,), epsilon] = judge(models, noise, expected, target)
    names = [model.name for model in models]
    save_transfer(verdicts, names, args.epsilons, len(x), short_label(GOLDFISH), files)


if __name__ == "__main__":
    run(main)
