"""Step 11: is my defense any good? Audit it: a compact AutoAttack, the worst case per
example, and the checks that catch gradient masking.

--models MODEL: one of step 7's digits models (its adversarially trained one: sound?).
--jpeg: step 6's JPEG defense on EfficientNet-Lite0 and the labelled ImageNet photos.
--decoy MODEL: a digits model whose gradients vanish, which only looks robust."""

from adversarial.plumbing.script import run

import functools
from pathlib import Path

import torch

from adversarial.plumbing import cli
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.samples import IMAGENET_PHOTOS
from adversarial.plumbing.tables import plural

DEFAULT_PHOTOS = ",".join(IMAGENET_PHOTOS[:10])


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--models", type=Path, metavar="MODEL", help="a step 7 weights file")
    mode.add_argument("--jpeg", action="store_true", help="step 6's JPEG defense, on ImageNet")
    mode.add_argument("--decoy", type=Path, metavar="MODEL", help="a step 7 weights file")
    parser.add_argument(
        "--undefended", type=Path, help="--models: the same network without the defense"
    )
    parser.add_argument("--epsilon", type=cli.pixel_amount, help="default 0.2; --jpeg 4/255")
    parser.add_argument("--quality", type=cli.jpeg_quality, default=75, help="--jpeg: 1..100")
    photos = cli.list_of(cli.one_of(IMAGENET_PHOTOS), keep_order=True)
    parser.add_argument(
        "--photos", type=photos, default=DEFAULT_PHOTOS, help="--jpeg's (default: 10)"
    )
    parser.add_argument(
        "--steps", type=cli.int_in(1, 10_000), help="white-box steps (default 100; --jpeg 20)"
    )
    parser.add_argument(
        "--target-classes", type=cli.int_in(1, 99), help="APGD-T's (default 9; --jpeg 3)"
    )
    parser.add_argument(
        "--queries", type=cli.int_in(1, 100_000), help="Square's (default 1000; --jpeg 300)"
    )
    cli.add_seed(parser, "the digits' split, the attacks' random starts")
    cli.add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.undefended and not args.models:
        raise UserError("--undefended is for --models (the others bring their own)")
    if args.jpeg:
        return audit_jpeg(args)
    audit_digits(args)


def audit_digits(args):
    """A step 7 model (or the decoy made of one) on its held-out digits."""
    from adversarial import digits
    from adversarial.audit import Budget, SaturatedLogits, audit, report

    torch.set_num_threads(1)  # tiny batches: see step 7
    model = digits.load_trained(args.models or args.decoy)
    undefended = digits.load_trained(args.undefended) if args.undefended else None
    title = f"{(args.models or args.decoy).name}"
    if args.decoy:  # its logits times 10,000: the same classes, no usable gradient
        model, undefended = SaturatedLogits(model), model
        title = f"the decoy ({title}, logits x 10,000)"
    _, _, x_test, y_test = digits.load_data(args.seed)  # step 7's split for the same seed
    torch.manual_seed(args.seed)
    epsilon = args.epsilon or 0.2
    budget = Budget(
        steps=args.steps or 100,
        target_classes=args.target_classes or 9,
        queries=args.queries or 1000,
        seed=args.seed,
    )
    report(audit(model, x_test, y_test, epsilon, budget, undefended), title)


def audit_jpeg(args):
    """EfficientNet-Lite0 behind JPEG: a white-box attacker's autograd sees no gradient
    through it. Then BPDA, the attack that knows the defense (step 6)."""
    from adversarial.attacks import PGD
    from adversarial.audit import Budget, ZeroGradient, audit, report
    from adversarial.defenses import jpeg
    from adversarial.models import load_model, pick_device
    from adversarial.plumbing.samples import sample_photo, true_class

    device = pick_device(args.device)
    model = load_model(args.model, args.weights, device)
    squeeze = functools.partial(jpeg, quality=args.quality)
    defended = ZeroGradient(model, squeeze)
    x = torch.cat([sample_photo(name) for name in args.photos]).to(device)
    y = torch.tensor([true_class(name) for name in args.photos], device=device)
    epsilon = args.epsilon or 4 / 255
    # A CPU budget: 20 steps, 3 target classes, 300 queries (AutoAttack's: 100, 9, 5000).
    budget = Budget(
        steps=args.steps or 20,
        target_classes=args.target_classes or 3,
        queries=args.queries or 300,
        p_init=0.05,
        seed=args.seed,
    )
    title = f"{model.name} behind JPEG {args.quality}"
    result = audit(defended, x, y, epsilon, budget, undefended=model)
    report(result, title)

    right = result.clean.to(device)  # BPDA attacks the photos the defended model gets right
    bpda = PGD(model, epsilon, budget.steps, targeted=False, defenses=[squeeze], seed=args.seed)
    x_adversarial = bpda(x[right], y[right]).adversarial
    with torch.inference_mode():  # judged by the defended model itself, on the saved images
        standing = defended(x_adversarial).argmax(1) == y[right]
    print(
        "BPDA (PGD with the gradient passed straight through JPEG, "
        f"{plural(budget.steps, 'step')}): "
        f"robust accuracy {int(standing.sum()) / len(x):.1%}"
    )


if __name__ == "__main__":
    run(main)
