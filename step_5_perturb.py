"""Step 5: craft a perturbation that makes the network see a goldfish (or any target).

The tutorial's SGD attack, bugs fixed: epsilon in pixels, r projected after each step, the
image kept valid, success judged on the 8-bit PNG saved. Several images or a folder: all."""

import utils.startup  # noqa: F401  (first: Ctrl-C while PyTorch loads exits quietly)

import functools
from pathlib import Path

import torch

from utils import cli
from utils.attacks import FGSM, PGD, TutorialSGD
from utils.batches import Summary, image_batches, list_images, one_file_given
from utils.defenses import jpeg
from utils.errors import AttackFailed, UserError
from utils.images import load_image_tensor
from utils.labels import class_index, label
from utils.models import load_models, pick_device, predict
from utils.outputs import linf_levels, plan_outputs, save_outputs
from utils.timing import Timer


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("images", nargs="+", type=Path, help="image files or folders of images")
    add("--target", default="1", help="class name or index (default: 1, goldfish)")
    add("--untargeted", action="store_true", help="push away from the current class")
    add("--method", choices=["sgd", "fgsm", "pgd"], default="sgd")
    add("--epsilon", type=cli.pixel_amount, default=2 / 255, help="L-inf bound, e.g. 2/255")
    add("--steps", type=cli.int_in(1, 10_000), default=30, help="budget, 1..10000 (default 30)")
    add("--lr", type=cli.positive_float, help="sgd: 0.1 by default; pgd: epsilon/4 by default")
    add("--through-jpeg", type=cli.list_of(cli.jpeg_quality), default=(), help="survive JPEG too")
    add("--seed", type=cli.int_in(0, 2**63 - 1), default=0, help="pgd's random start")
    add("--output-dir", type=Path, default=Path("outputs"))
    add("--batch-size", type=cli.int_in(1, 1024), default=8, help="images per batch, 1..1024")
    add("--timing", action="store_true", help="print where the time went")
    cli.add_model_arguments(parser, ensemble=True)
    return parser.parse_args(argv)


def make_attack(args, models, on_step):
    through_jpeg = [functools.partial(jpeg, quality=quality) for quality in args.through_jpeg]
    options = dict(targeted=not args.untargeted, on_step=on_step, defenses=through_jpeg)
    if args.method == "sgd":
        return TutorialSGD(models, args.epsilon, args.steps, lr=args.lr or 0.1, **options)
    if args.method == "pgd":
        return PGD(models, args.epsilon, args.steps, step_size=args.lr, seed=args.seed, **options)
    return FGSM(models, args.epsilon, **options)


def print_progress(step, cross_entropy, predicted):
    if step % 5 == 0:  # the tutorial's progress line
        print(f"Loss: {cross_entropy[0]:.2f} / Class: {label(predicted[0])}")


def main(argv=None):
    args = parse_args(argv)
    timer = Timer(enabled=args.timing)
    paths = list_images(args.images)
    one_image = one_file_given(args.images)
    target = None if args.untargeted else class_index(args.target)
    outputs = plan_outputs(paths, args.output_dir, one_image)
    summary = Summary("image", "original", "final", "success", "steps", "linf_levels", "note")
    unreadable = functools.partial(summary.add, success="no", note="not a readable image")
    batches = image_batches(paths, args.batch_size, "attacking", on_error=unreadable)
    if one_image:  # a bad file fails before the model loads
        batches = [{paths[0]: load_image_tensor(paths[0])}]
    with timer("model load"):  # several models: an ensemble, fooled only when all of them are
        models = load_models(args.model, args.weights, pick_device(args.device))
    attack = make_attack(args, models, print_progress if one_image else None)
    with timer("attack and outputs"):
        for images in batches:
            attack_batch(args, models, attack, images, target, outputs, summary, one_image)
    if not one_image:
        summary.report(outputs.summary)
        if failed := summary.count("success", "no"):
            raise AttackFailed(f"{failed} of {len(summary.rows)} images not fooled (see the notes)")
    timer.report()


def attack_batch(args, models, attack, images, target, outputs, summary, story):
    """The one path every image takes: predict, attack, judge the saved PNG, save."""
    x = torch.cat(list(images.values()))
    clean = predict(models[0], x)  # an ensemble's first model: the classes printed
    original = clean.argmax(1)
    if story and target == original[0]:
        raise UserError(f"{next(iter(images))} is already {label(target)}: pick another --target")
    if story and target is not None:
        print(f"Target class: {label(target)}")
    labels = original if target is None else torch.full_like(original, target)
    result = attack(x, labels)
    for i, path in enumerate(images):
        final, x_adv = result.probabilities[i].cpu(), result.adversarial[i : i + 1].cpu()
        fooled = bool(result.success[i]) and target != original[i]
        steps, linf = int(result.steps[i]), linf_levels(x[i], x_adv)
        if story and not fooled:
            wanted = label(target) if target is not None else f"anything but {label(original[i])}"
            best = f"best probability of {wanted}: {result.best_probability[i]:.3f}"
            budget = f"{attack.steps} step(s) at epsilon {args.epsilon * 255:.3g}/255"
            hint = "try --method sgd or pgd, more --steps, a larger --epsilon or --lr"
            raise AttackFailed(f"no adversarial image within {budget} ({best}); {hint}")
        if fooled:
            save_outputs(models, x[i], x_adv, clean[i], final, outputs.per_image[path], target)
        if story:
            jpeg = ", ".join(map(str, args.through_jpeg))
            also = f", and still after JPEG at quality {jpeg}" if jpeg else ""
            print(f"Fooled after {steps} steps (max change {linf}/255 per pixel{also})")
            print(f"Old prediction: {label(original[i])}")
            print(f"New prediction: {label(final.argmax())}")
        else:
            note = "" if fooled else "already the target" if target == original[i] else "not fooled"
            cells = [label(original[i]), label(final.argmax()), "yes" if fooled else "no", steps]
            summary.add(path, *cells, linf if fooled else "", note)


if __name__ == "__main__":
    cli.run(main)
