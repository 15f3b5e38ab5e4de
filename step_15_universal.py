"""Step 15: one perturbation for every photo. A universal perturbation v (Moosavi-Dezfooli
et al. 2017), within L-inf xi, fitted on half of the labelled photos and judged on the
other half and on the sample photos, on the model and three others; --method deepfool:
the paper's Algorithm 1, ascent (default): its gradient-ascent form, in batches. --patch:
an adversarial patch (Brown et al. 2017) towards a toaster, pasted anywhere. Each is
judged on its saved file, beside random noise (or a random patch and a real photo's crop)
of the same size. --models: step 7's models, fitted on the training digits, judged on the
held-out ones, at several xi."""

from adversarial.plumbing.script import run

import functools
import time
from pathlib import Path

import torch

from adversarial import universal
from adversarial.attacks.universal import (
    AdversarialPatch,
    UniversalAscent,
    UniversalPerturbation,
)
from adversarial.models import MODELS, load_model, other_models, pick_device
from adversarial.plumbing import cli
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_outputs
from adversarial.plumbing.images import SIZE
from adversarial.plumbing.labels import class_index, label
from adversarial.plumbing.perturbations import load_perturbation
from adversarial.transforms import patch_side

STEPS = {"ascent": 10, "patch": 150}  # --steps' defaults: v's ascent, and the patch


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--epsilon", type=cli.pixel_amount, default=10 / 255, help="xi: 10/255")
    methods = ("deepfool", "ascent")
    parser.add_argument("--method", choices=methods, default="ascent", help="see the page")
    parser.add_argument("--passes", type=cli.int_in(1, 100), default=3, help="deepfool: 3")
    parser.add_argument("--seed", type=cli.int_in(0, 2**32 - 1), default=0, help="split, order")
    parser.add_argument("--models", type=Path, nargs="+", help="step 7's weights files")
    xis = cli.list_of(cli.pixel_amount)
    parser.add_argument("--epsilons", type=xis, default="0.1,0.2,0.3", help="--models' xi")
    parser.add_argument("--patch", action="store_true", help="an adversarial patch instead")
    parser.add_argument("--target", default="859", help="the patch's class (default: toaster)")
    parser.add_argument("--share", type=cli.share, default=0.1, help="of the image: 0.1")
    steps = cli.int_in(1, 100_000)
    help_steps = f"ascent: {STEPS['ascent']}, patch: {STEPS['patch']} (default)"
    parser.add_argument("--steps", type=steps, help=help_steps)
    others = cli.list_of(cli.one_of((*MODELS[:-1], "none")), keep_order=True)
    parser.add_argument("--transfer", type=others, help="models to judge v on (default: all)")
    parser.add_argument("--placements", type=cli.int_in(1, 100), default=3, help="per photo")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs/universal"), help="for every file"
    )
    cli.add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.patch and args.models:
        raise UserError("give --patch or --models WEIGHTS..., not both")
    if args.models:
        return on_digits(args)
    fitting, held_out = universal.split_photos(args.seed)
    files = universal.output_files(args.output_dir, args.patch)
    check_outputs(files.values(), [args.weights])
    device = pick_device(args.device)
    model = load_model(args.model, args.weights, device)
    sets = universal.photo_sets(fitting, held_out)
    x_fit = sets["fitting"][0]
    print(f"Fitting on {len(x_fit)} labelled photos ({', '.join(fitting)}) with {model.name}:")
    print("the paper fitted on 10,000 ImageNet training images.")
    if args.patch:
        return adversarial_patch(args, model, sets, files)
    universal_perturbation(args, model, sets, held_out, files, device)


def universal_perturbation(args, model, sets, held_out, files, device):
    """Algorithm 1 on the fitting photos; v saved, read back, judged on every model."""
    xi, start = args.epsilon, time.perf_counter()
    result = universal_attack(args, model, xi)(sets["fitting"][0])
    rates = ", ".join(f"{rate:.0%}" for rate in result.fooling_rates)
    seconds = time.perf_counter() - start
    each = "pass" if args.method == "deepfool" else "step"
    print(f"Fooling rate on them after each {each}: {rates} ({result.gradients} gradients)")
    universal.save_v(files, model, result.v, sets["held-out"][0][:4], held_out[:4])
    v = load_perturbation(files["universal_r.npy"])  # judged as the file holds it
    print(f"Saved {', '.join(str(path) for path in files.values())} ({seconds:.0f} s to fit)")
    others = [name for name in args.transfer if name != "none"] if args.transfer else None
    models = [model, *other_models(model, others, device)]
    print(f"\nWith v (L-inf {v.abs().max() * 255:.0f}/255), of the photos each model gets right,")
    print("the share whose class changes; random signs of the same size on each photo beside it:")
    universal.fooling_table(models, sets, v, xi, args.seed)


def universal_attack(args, model, xi):
    """The paper's Algorithm 1 (DeepFool's steps, image by image), or its gradient-ascent form."""
    if args.method == "deepfool":
        return UniversalPerturbation(model, xi, passes=args.passes, seed=args.seed)
    return UniversalAscent(model, xi, steps=args.steps or STEPS["ascent"])


def adversarial_patch(args, model, sets, files):
    """Brown et al.'s patch towards the target, beside a random patch and a photo's crop,
    pasted on the held-out and sample photos at random places; judged on the saved PNGs."""
    target, side = class_index(args.target), patch_side(args.share)
    print(f"A {side}x{side} patch ({side**2 / SIZE**2:.2%} of a {SIZE}x{SIZE} photo), turned")
    print(f"by up to 22.5 degrees, scaled 0.8-1, placed anywhere; aiming at {label(target)}")
    start = time.perf_counter()
    steps = args.steps or STEPS["patch"]
    result = AdversarialPatch(model, side, target, steps, seed=args.seed)(sets["fitting"][0])
    print(f"Trained: {steps} steps, {time.perf_counter() - start:.0f} s; last step's", end=" ")
    print(f"{result.success[-1]:.0%} {label(target).split(',')[0]}")
    # The baselines, of the same size: a random patch, and a real photo's crop.
    baselines = universal.baseline_patches(sets["fitting"][0][0], side, args.seed)
    patches = {"adversarial": result.patch, **baselines}
    x = torch.cat([sets["held-out"][0], sets["samples"][0]])
    universal.judge_patches(model, files, x, patches, args.placements, target, args.seed)


def on_digits(args):
    """Step 7's models: v fitted on the training digits, judged on the held-out ones."""
    from adversarial import digits

    torch.set_num_threads(1)  # as steps 7 and 8: tiny batches run faster on one thread
    models = digits.load_named(args.models)  # distinct names, even for two of one name
    x_train, _, x_test, y_test = digits.load_data(args.seed)  # step 7's split for the same seed
    print(f"Universal perturbations ({args.method}) fitted on {len(x_train)} training digits:")
    attack = functools.partial(universal_attack, args)  # attack(model, xi)
    universal.on_digits(models, x_train, x_test, y_test, args.epsilons, attack, args.seed)


if __name__ == "__main__":
    run(main)
