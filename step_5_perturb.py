"""Step 5: craft a perturbation that makes the network see a goldfish (or any target).

The tutorial's SGD attack, bugs fixed: epsilon in pixels, r projected after each step, the
image kept valid, success judged on the 8-bit PNG saved. Several images or a folder: all."""

from adversarial.plumbing.script import run

import functools
from pathlib import Path

from adversarial.attacks import FGSM, PGD, TutorialSGD, attack_labels
from adversarial.defenses import jpeg
from adversarial.models import load_models, pick_device, predict
from adversarial.plumbing import cli
from adversarial.plumbing.batches import attack_all, list_images, one_file_given
from adversarial.plumbing.errors import AttackFailed, UserError
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import class_index, label, short_label
from adversarial.plumbing.outputs import linf_levels, plan_outputs, save_outputs, view_names
from adversarial.plumbing.tables import epsilon_text, plural
from adversarial.plumbing.timing import Timer


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--target", default="1", help="class name or index (default: 1, goldfish)")
    parser.add_argument(
        "--untargeted", action="store_true", help="push away from the current class"
    )
    parser.add_argument("--method", choices=["sgd", "fgsm", "pgd"], default="sgd", help="attack")
    parser.add_argument(
        "--epsilon", type=cli.pixel_amount, default=2 / 255, help="L-inf bound, e.g. 2/255"
    )
    parser.add_argument(
        "--steps", type=cli.int_in(1, 10_000), default=30, help="budget, 1..10000 (default 30)"
    )
    parser.add_argument(
        "--lr", type=cli.positive_float, help="sgd: 0.1 by default; pgd: epsilon/4 by default"
    )
    parser.add_argument(
        "--no-early-stop",
        action="store_true",
        help="take every step, even after the PNG is fooled (a larger margin)",
    )
    parser.add_argument(
        "--through-jpeg", type=cli.list_of(cli.jpeg_quality), default=(), help="survive JPEG too"
    )
    parser.add_argument(
        "--seed", type=cli.int_in(0, 2**63 - 1), default=0, help="pgd's random start"
    )
    cli.add_output_dir(parser, what="the adversarial image, its perturbation, the comparison")
    parser.add_argument(
        "--batch-size", type=cli.int_in(1, 1024), default=8, help="images per batch, 1..1024"
    )
    parser.add_argument("--timing", action="store_true", help="print where the time went")
    cli.add_model_arguments(parser, ensemble=True)
    return parser.parse_args(argv)


def make_attack(args, models, on_step=None):
    """Several models: an ensemble, fooled only when all of them are. --through-jpeg: the
    JPEG of the image is a view that must be fooled too."""
    through_jpeg = [functools.partial(jpeg, quality=quality) for quality in args.through_jpeg]
    options = dict(
        targeted=not args.untargeted,
        defenses=through_jpeg,
        early_stop=not args.no_early_stop,
        on_step=on_step,
    )
    if args.method == "sgd":
        return TutorialSGD(models, args.epsilon, args.steps, lr=args.lr or 0.1, **options)
    if args.method == "pgd":
        return PGD(models, args.epsilon, args.steps, step_size=args.lr, seed=args.seed, **options)
    return FGSM(models, args.epsilon, **options)


def main(argv=None):
    args = parse_args(argv)
    timer = Timer(enabled=args.timing)
    paths = list_images(args.images)
    one_image = one_file_given(args.images)  # the tutorial's story, or a table for many
    target = None if args.untargeted else class_index(args.target)
    outputs = plan_outputs(paths, args.output_dir, one_image, [args.weights])
    if one_image:
        x = load_image_tensor(paths[0])  # a bad file fails before the model loads
    with timer("model load"):
        models = load_models(args.model, args.weights, pick_device(args.device))
    with timer("attack and outputs"):
        if one_image:
            attack_one(args, models, paths[0], x, target, outputs.per_image[paths[0]])
        else:
            attack = make_attack(args, models)
            attack_all(attack, paths, target, outputs, args.batch_size, title(args, models))
    timer.report()


def title(args, models):
    """The comparison picture's title: the models, the method and epsilon."""
    names = " + ".join(model.name for model in models)
    return f"{names}, {args.method}, epsilon {epsilon_text(args.epsilon)}"


def attack_one(args, models, path, x, target, files):
    """The tutorial's story for one image: the progress lines, then old and new prediction."""
    names = view_names(models, args.through_jpeg)

    def print_progress(step, cross_entropy, predicted):
        if step % 5 == 0:  # the tutorial's progress line; the loss is the mean over views
            views = zip(names[1:], predicted[1:, 0], strict=True)
            others = [f"{name}: {short_label(p)}" for name, p in views]
            also = f" ({'; '.join(others)})" if others else ""
            print(f"Loss: {cross_entropy[0]:.2f} / Class: {label(predicted[0, 0])}{also}")

    clean = predict(models[0], x)  # an ensemble's first model: the classes printed
    original = clean.argmax(1)
    if target == original[0]:
        raise UserError(f"{path} is already {label(target)}: pick another --target")
    if target is not None:
        print(f"Target class: {label(target)}")
    attack = make_attack(args, models, print_progress)
    result = attack(x, attack_labels(original, target))
    if not result.success[0]:
        raise AttackFailed(failure(args, attack, result, names, target, original[0]))
    x_adversarial, final = result.adversarial[:1].cpu(), result.probabilities[0].cpu()
    save_outputs(models, x, x_adversarial, clean[0], final, files, target, title(args, models))
    jpeg = ", ".join(map(str, args.through_jpeg))
    also = f", and still after JPEG at quality {jpeg}" if jpeg else ""
    change = linf_levels(x, x_adversarial)
    steps = plural(int(result.steps[0]), "step")
    print(f"Fooled after {steps} (max change {change}/255 per pixel{also})")
    print(f"Old prediction: {label(original[0])}")
    print(f"New prediction: {label(final.argmax())}")


def failure(args, attack, result, names, target, original):
    """Why no adversarial image was found: the budget, the best probability, which view
    held out, and what to try."""
    wanted = label(target) if target is not None else f"anything but {label(original)}"
    best = f"best probability of {wanted}: {result.best_probability[0]:.3f}"
    budget = f"{plural(attack.steps, 'step')} at epsilon {epsilon_text(args.epsilon)}"
    views = zip(names, result.views_fooled[:, 0], strict=True)
    held_out = [name for name, fooled in views if not fooled]
    which = f"; not fooled: {', '.join(held_out)}" if len(names) > 1 else ""
    if args.method == "fgsm":
        hint = "try --method sgd or pgd, or a larger --epsilon"
    else:
        hint = "try more --steps, a larger --epsilon or --lr"
    return f"no adversarial image within {budget} ({best}{which}); {hint}"


if __name__ == "__main__":
    run(main)
