"""Step 9: attacks without the model: does an adversarial image fool networks it never saw?

Classify one image with every model at hand; or, with --sweep, craft examples on each model
and on each leave-one-out ensemble over scikit-image's photos, and measure how often they
fool each model (Szegedy et al. 2014; Liu et al. 2017: ensembles transfer better)."""

import utils.startup  # noqa: F401  (first: Ctrl-C while PyTorch loads exits quietly)

import itertools
from pathlib import Path

import torch

from utils import cli
from utils.attacks import PGD
from utils.errors import UserError
from utils.files import check_outputs
from utils.images import load_image_tensor
from utils.labels import label, top_label
from utils.models import MODELS, load_models, models_at_hand, pick_device, predict
from utils.outputs import provenance
from utils.samples import PHOTOS, sample_photo
from utils.tables import print_table
from utils.transfer import save_transfer

GOLDFISH = 1


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("image", nargs="?", type=Path, help="an adversarial image (step 5's PNG)")
    add("--original", type=Path, help="the clean image: untargeted, fooled = the class changed")
    names = cli.one_of([name for name in MODELS if name != "auto"])
    add("--models", type=cli.list_of(names, keep_order=True), help="default: all at hand")
    add("--sweep", action="store_true", help="craft on each source, test on every model")
    add("--epsilons", type=cli.list_of(cli.pixel_amount), default="2/255,4/255,8/255")
    add("--steps", type=cli.int_in(1, 1000), default=10, help="PGD steps, 1..1000 (default 10)")
    photos = cli.list_of(cli.one_of(list(PHOTOS)), keep_order=True)
    add("--photos", type=photos, default="coffee,chelsea,motorcycle,camera")
    add("--seed", type=cli.int_in(0, 2**63 - 1), default=0, help="PGD's random start")
    add("--output-dir", type=Path, default=Path("outputs"), help="the sweep's table and plot")
    add("--weights", type=Path, help="ResNet18's state_dict file: ResNet18 joins the models")
    cli.add_device_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.sweep == (args.image is not None):
        raise UserError("give one adversarial image, or --sweep")
    if args.sweep and args.original:
        raise UserError("--original is for one image; the sweep makes its own examples")
    files = [args.output_dir / "transfer.png", args.output_dir / "transfer.csv"]
    check_outputs(files if args.sweep else [], [])
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
    """Targeted (goldfish) and untargeted examples from every source, on every photo."""
    from tqdm import tqdm

    x = torch.cat([sample_photo(name) for name in args.photos])
    clean = {model.name: predict(model, x).argmax(1) for model in models}
    sources = [[model] for model in models]
    if len(models) > 2:  # leave-one-out ensembles: every model but one
        sources += [[m for m in models if m is not held_out] for held_out in models]
    shares = {}  # (targeted, source names, epsilon) -> {model name: share of photos fooled}
    settings = list(itertools.product((False, True), sources, args.epsilons))
    for targeted, source, epsilon in tqdm(settings, desc="crafting", unit="setting"):
        original = clean[source[0].name]
        labels = torch.full_like(original, GOLDFISH) if targeted else original
        # The whole budget (no early stop): an example just across the line rarely transfers.
        options = dict(seed=args.seed, targeted=targeted, early_stop=False, verify=False)
        attack = PGD(source, epsilon, args.steps, **options)
        x_adv = attack(x, labels).adversarial
        shares[targeted, tuple(m.name for m in source), epsilon] = by_model = {}
        for model in models:  # targeted: sees the goldfish; untargeted: left its own class
            predicted = predict(model, x_adv).argmax(1)
            fooled = predicted == GOLDFISH if targeted else predicted != clean[model.name]
            by_model[model.name] = fooled.float().mean().item()
    save_transfer(shares, [m.name for m in models], args.epsilons, len(x), files)


if __name__ == "__main__":
    cli.run(main)
