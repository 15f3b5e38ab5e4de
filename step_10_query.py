"""Step 10: attacks that only ask. Fool the model through its answers alone, as behind a web
API: send an image, read back probabilities; no gradients, no weights, no other model.

The Square Attack (Andriushchenko et al. 2020) on one image; --sweep: the share of the
labelled ImageNet photos fooled against the number of queries, at three epsilons, beside the
paper's curve; --models: Square beside PGD on step 7's models (where the score-only attack
does better than the white-box one, suspect gradient masking)."""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial.attacks.query import Square, model_query
from adversarial.models import load_model, pick_device, predict
from adversarial.plumbing import cli
from adversarial.plumbing.errors import AttackFailed, UserError
from adversarial.plumbing.files import check_outputs
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import class_index, label
from adversarial.plumbing.outputs import linf_levels, plan_outputs, save_outputs
from adversarial.plumbing.samples import IMAGENET_PHOTOS, recorded_true_class
from adversarial.plumbing.tables import epsilon_text, plural

# The paper's square sizes: 5% of the image at first on ImageNet, 80% on small digits
# (AutoAttack's setting for MNIST); smaller when targeted (the authors' advice).
P_INIT = {"imagenet": 0.05, "imagenet targeted": 0.01, "digits": 0.8}
DEFAULT_PHOTOS = ",".join(IMAGENET_PHOTOS)


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    epsilons = cli.list_of(cli.pixel_amount)
    parser.add_argument("image", nargs="?", type=Path, help="the image to attack")
    parser.add_argument("--target", help="class name or index (default: untargeted)")
    parser.add_argument(
        "--epsilon", type=cli.pixel_amount, default=4 / 255, help="L-inf bound (default 4/255)"
    )
    parser.add_argument(
        "--queries", type=cli.int_in(1, 100_000), default=1000, help="per image (default 1000)"
    )
    parser.add_argument("--p-init", type=cli.share, help="the first square's share of the image")
    parser.add_argument(
        "--seed", type=cli.int_in(0, 2**32 - 1), default=0, help="the draws, the digits' split"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="success against queries over labelled photos"
    )
    parser.add_argument(
        "--epsilons", type=epsilons, default="4/255,8/255,12.75/255", help="--sweep's"
    )
    photos = cli.list_of(cli.one_of(IMAGENET_PHOTOS), keep_order=True)
    parser.add_argument(
        "--photos", type=photos, default=DEFAULT_PHOTOS, help="default: all 20 labelled photos"
    )
    parser.add_argument(
        "--models", type=Path, nargs="+", help="step 7's weights files: Square against PGD"
    )
    parser.add_argument("--digits-epsilons", type=epsilons, default="0.1,0.2,0.3", help="--models'")
    parser.add_argument(
        "--pgd-steps", type=cli.int_in(1, 1000), help="digits: 1..1000 (default: step 7's 20)"
    )
    parser.add_argument(
        "--pgd-restarts", type=cli.int_in(1, 100), default=1, help="digits: PGD's runs, 1..100"
    )
    cli.add_output_dir(parser, "outputs/query", "the image and comparison, or the sweep's files")
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
    """The tutorial's story for one image, told with queries: old and new prediction."""
    outputs = plan_outputs([args.image], args.output_dir, True, [args.weights])
    x = load_image_tensor(args.image)  # a bad file fails before the model loads
    device = pick_device(args.device)
    model = load_model(args.model, args.weights, device)
    clean = predict(model, x)
    original = int(clean[0].argmax())
    target = None if args.target is None else class_index(args.target)
    if target == original:
        raise UserError(f"{args.image} is already {label(target)}: pick another --target")
    if target is not None:
        print(f"Target class: {label(target)}")
    known = recorded_true_class(args.image)  # step 1 records a labelled photo's class
    if target is None and known is not None and known != original:
        raise UserError(
            f"{args.image} is {label(known)}, and the model already sees {label(original)}: "
            "nothing to attack"
        )
    labels = torch.tensor([original if target is None else target])
    targeted = target is not None
    p_init = args.p_init or P_INIT["imagenet targeted" if targeted else "imagenet"]
    # The attack is given the model's answers and nothing else.
    square = Square(model_query(model), args.epsilon, args.queries, p_init, targeted, args.seed)
    result = square(x.to(device), labels.to(device))
    if not result.success[0]:
        wanted = label(target) if targeted else f"anything but {label(original)}"
        raise AttackFailed(
            f"no adversarial image within {plural(args.queries, 'query')} at epsilon "
            f"{epsilon_text(args.epsilon)} "
            f"(best probability of {wanted}: {result.best_probability[0]:.3f}); "
            "try more --queries or a larger --epsilon"
        )
    x_adversarial, final = result.adversarial.cpu(), result.probabilities[0].cpu()
    title = f"{model.name}, Square Attack, epsilon {epsilon_text(args.epsilon)}"
    files = outputs.per_image[args.image]
    save_outputs([model], x, x_adversarial, clean[0], final, files, target, title)
    change = linf_levels(x, x_adversarial)
    queries = plural(int(result.steps[0]), "query")
    print(f"Fooled after {queries} (max change {change}/255 per pixel)")
    print(f"Old prediction: {label(original)}")
    print(f"New prediction: {label(final.argmax())}")


def sweep(args):
    """Untargeted, every epsilon, over the photos the model classifies right."""
    from adversarial.query_budget import save_sweep, sweep_photos

    files = [args.output_dir / "square.png", args.output_dir / "square.csv"]
    check_outputs(files, [args.weights])
    model = load_model(args.model, args.weights, pick_device(args.device))
    p_init = args.p_init or P_INIT["imagenet"]
    results, judged = sweep_photos(
        model, args.photos, args.epsilons, args.queries, p_init, args.seed
    )
    save_sweep(results, args.photos, judged, args.queries, model.name, files)


def on_digits(args):
    """Step 7's models on their held-out digits: PGD (white-box) beside Square."""
    from adversarial import digits
    from adversarial.query_budget import compare_on_digits

    models = digits.load_named(args.models)  # distinct names, even for two of one name
    _, _, x_test, y_test = digits.load_data(args.seed)  # step 7's split for the same seed
    torch.manual_seed(args.seed)  # PGD's random starts
    steps = args.pgd_steps or digits.EVAL_PGD_STEPS
    p_init = args.p_init or P_INIT["digits"]
    square = f"{plural(args.queries, 'query')}, p_init {p_init}"
    print(f"PGD: {plural(steps, 'step')} of epsilon/4; Square: {square}")
    pgd = {"steps": steps, "restarts": args.pgd_restarts}
    square = {"queries": args.queries, "p_init": p_init, "seed": args.seed}
    compare_on_digits(models, x_test, y_test, args.digits_epsilons, pgd, square)


if __name__ == "__main__":
    run(main)
