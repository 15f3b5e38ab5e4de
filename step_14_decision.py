"""Step 14: attacks that see only the label. Fool the model through its top class alone, as
behind a content filter that answers yes or no: no probabilities, no gradients, no weights.

HopSkipJump (Chen, Jordan and Wainwright 2020) on one image, every query counted; --walk:
the example after a few budgets beside the white-box minimum; --sweep: the L2 each budget
buys on the labelled ImageNet photos, against CW-L2's (white box, step 13); --models: the
same on step 7's models."""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial import label_only
from adversarial.attacks.decision import HopSkipJump, model_decision
from adversarial.attacks.minimal import fools, sizes
from adversarial.models import load_model, pick_device, predict
from adversarial.plumbing import cli
from adversarial.plumbing.errors import AttackFailed, UserError
from adversarial.plumbing.files import check_outputs, write_all
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import class_index, label
from adversarial.plumbing.outputs import plan_outputs, save_outputs
from adversarial.plumbing.samples import IMAGENET_PHOTOS, recorded_true_class


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("image", nargs="?", type=Path, help="the image to attack")
    parser.add_argument("--target", help="class name or index (default: untargeted)")
    parser.add_argument(
        "--queries", type=cli.int_in(1, 100_000), default=1000, help="per image (default 1000)"
    )
    parser.add_argument("--norm", choices=["l2", "linf"], default="l2", help="(default l2)")
    parser.add_argument("--seed", type=cli.int_in(0, 2**32 - 1), default=0, help="the draws")
    walk = cli.list_of(cli.int_in(1, 100_000))
    parser.add_argument("--walk", type=walk, help="e.g. 100,1000: walk.png, with CW-L2 beside")
    parser.add_argument("--sweep", action="store_true", help="L2 against queries, labelled photos")
    photos = cli.list_of(cli.one_of(IMAGENET_PHOTOS), keep_order=True)
    parser.add_argument("--photos", type=photos, default=",".join(IMAGENET_PHOTOS), help="all 20")
    parser.add_argument("--models", type=Path, nargs="+", help="step 7's weights files")
    parser.add_argument(
        "--digits-count", type=cli.int_in(1, 360), default=100, help="held-out digits (of 360)"
    )
    budget = cli.int_in(1, 10_000)
    parser.add_argument(
        "--cw-searches", type=budget, default=label_only.CW.cw_searches, help="CW-L2's c search"
    )
    parser.add_argument(
        "--cw-steps", type=budget, default=label_only.CW.cw_steps, help="CW-L2's steps per c"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs/decision"), help="for every file"
    )
    cli.add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if (args.image is not None) + args.sweep + bool(args.models) != 1:
        raise UserError("give one image, or --sweep, or --models WEIGHTS...")
    if args.models:
        return on_digits(args)
    if args.sweep:
        return sweep(args)
    attack_one(args)


def attack_one(args):
    """The tutorial's story for one image, told with labels only: old and new prediction."""
    outputs = plan_outputs([args.image], args.output_dir, True, [args.weights])
    walk_png = args.output_dir / "walk.png"
    if args.walk:
        check_outputs([*outputs.per_image[args.image].values(), walk_png], [args.image])
    x = load_image_tensor(args.image)  # a bad file fails before the model loads
    device = pick_device(args.device)
    model = load_model(args.model, args.weights, device)
    clean = predict(model, x)
    original = int(clean[0].argmax())
    target = None if args.target is None else class_index(args.target)
    if target == original:
        raise UserError(f"{args.image} is already {label(target)}: pick another --target")
    known = recorded_true_class(args.image)  # step 1 records a labelled photo's class
    if target is None and known is not None and known != original:
        raise UserError(
            f"{args.image} is {label(known)}, and the model already sees {label(original)}: "
            "nothing to attack"
        )
    start = None
    if target is not None:  # targeted: from a photo the model should see as the target
        name, start = label_only.photo_of(target)
        print(f"Target class: {label(target)} (starting from the labelled photo {name})")
    labels = torch.tensor([original if target is None else target])
    targeted = target is not None

    def attack(queries):  # the attack is given the model's top class and nothing else
        decide = model_decision(model)
        hop_skip_jump = HopSkipJump(decide, queries, args.norm, targeted, args.seed)
        return hop_skip_jump(x.to(device), labels.to(device), start)

    result = attack(args.queries)
    if not result.success[0]:
        where = "the start photo is not" if targeted else "no random image of 100 is"
        raise AttackFailed(f"{where} adversarial to {model.name}: nothing to search from")
    x_adversarial = result.adversarial.cpu()
    final = predict(model, x_adversarial)[0]  # the saved PNG is judged again: as everywhere
    norm = "L2" if args.norm == "l2" else "L-inf"
    title = f"{model.name}, HopSkipJump ({norm}), {args.queries} queries, labels only"
    save_outputs(
        [model], x, x_adversarial, clean[0], final, outputs.per_image[args.image], target, title
    )
    kinds = ", ".join(f"{kind} {n}" for kind, n in result.by_kind[0].items())
    print(f"Queries: {int(result.queries[0])} ({kinds})")
    size = sizes(x, x_adversarial)
    l2, linf = size.l2.item(), size.linf.item()
    print(f"L2 {l2:.3f} in pixels of [0, 1] ({l2 * 255:.1f} in 8-bit levels)")
    print(f"L-inf {linf:.3f} in pixels of [0, 1] ({round(linf * 255)}/255)")
    print(f"Old prediction: {label(original)}")
    print(f"New prediction: {label(final.argmax())}")
    if args.walk:  # the same seed: each budget's run is the start of the longest one's
        steps = [(f"{b} queries", attack(b).adversarial.cpu()) for b in sorted(args.walk)]
        cw = label_only.cw_example(
            model, x.to(device), labels.to(device), args.cw_searches, args.cw_steps, targeted
        )
        fooled = fools(model, cw.to(device), labels.to(device), targeted)[0]
        name = "white box (CW-L2)" if fooled else "CW-L2: not adversarial"
        picture = label_only.walk_writer(x, [*steps, (name, cw)], title)
        write_all({walk_png: picture})
        print(f"Saved {walk_png.name} in {walk_png.parent}")


def sweep(args):
    """Untargeted, L2, over the labelled photos the model classifies right."""
    files = [args.output_dir / "decision.png", args.output_dir / "decision.csv"]
    check_outputs(files, [args.weights])
    model = load_model(args.model, args.weights, pick_device(args.device))
    judged, result, cw_l2 = label_only.sweep_photos(
        model, args.photos, args.queries, args.seed, args.cw_searches, args.cw_steps
    )
    label_only.save_sweep(args.photos, judged, result, cw_l2, args.queries, model.name, files)


def on_digits(args):
    """Step 7's models on their held-out digits: HopSkipJump's L2 against CW-L2's."""
    from adversarial import digits

    models = digits.load_named(args.models)  # distinct names, even for two of one name
    _, _, x_test, y_test = digits.load_data(args.seed)  # step 7's split for the same seed
    x, y = x_test[: args.digits_count], y_test[: args.digits_count]
    cw = (args.cw_searches, args.cw_steps)
    label_only.compare_on_digits(models, x, y, args.queries, args.seed, *cw)


if __name__ == "__main__":
    run(main)
