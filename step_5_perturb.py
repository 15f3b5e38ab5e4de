"""Step 5: craft a perturbation that makes the network see a goldfish (or any target).

The tutorial's SGD attack, with its bugs fixed: epsilon is in pixels, the perturbation
is projected after each step, the image stays valid, and success is judged on the
8-bit PNG that is actually saved.
"""

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.attacks import FGSM, PGD, TutorialSGD
from utils.cli import (
    ArgumentParser,
    AttackFailed,
    UserError,
    add_model_arguments,
    check_not_input,
    check_writable_dir,
    jpeg_quality,
    list_of,
    pixel_amount,
    positive_float,
    positive_int,
    run,
    write_atomically,
)
from utils.defenses import jpeg
from utils.figures import amplified_difference, save_comparison
from utils.images import (
    image_batches,
    list_images,
    load_image_tensor,
    one_file_given,
    save_image,
)
from utils.labels import class_index, label, short_label
from utils.models import load_model, pick_device, predict
from utils.perturbations import save_perturbation
from utils.timing import Timer


def parse_args():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--target", default="1", help="class name or index (default: 1, goldfish)")
    parser.add_argument(
        "--untargeted", action="store_true", help="push away from the current class"
    )
    parser.add_argument("--method", choices=["sgd", "fgsm", "pgd"], default="sgd")
    parser.add_argument(
        "--epsilon",
        type=pixel_amount,
        default=2 / 255,
        help="L-inf bound in pixels of [0, 1], e.g. 2/255 (default; see README)",
    )
    parser.add_argument("--steps", type=positive_int, default=30, help="step budget (default 30)")
    parser.add_argument(
        "--lr",
        type=positive_float,
        help="sgd: learning rate (default 0.1); pgd: step size in pixels (default epsilon/4)",
    )
    parser.add_argument(
        "--through-jpeg",
        type=list_of(jpeg_quality),
        default=(),
        metavar="Q[,Q...]",
        help="stay adversarial after JPEG compression at quality Q too (several: at each): "
        "JPEG in the forward pass, gradient passed straight through (BPDA)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (pgd's random start)")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per batch")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--timing", action="store_true", help="print start-up, model load and attack times"
    )
    add_model_arguments(parser)
    return parser.parse_args()


def make_attack(args, model, on_step):
    through_jpeg = [functools.partial(jpeg, quality=quality) for quality in args.through_jpeg]
    options = dict(targeted=not args.untargeted, on_step=on_step, defenses=through_jpeg)
    if args.method == "pgd":
        options["seed"] = args.seed
    if args.method == "sgd":
        return TutorialSGD(model, args.epsilon, args.steps, lr=args.lr or 0.1, **options)
    if args.method == "pgd":
        return PGD(model, args.epsilon, args.steps, step_size=args.lr, **options)
    return FGSM(model, args.epsilon, **options)


def short(index, probabilities):
    """'goldfish 43%': the first name of a label and its probability, for captions."""
    return f"{short_label(index)} {probabilities[index]:.0%}"


OUTPUTS = ("adversarial.png", "adversarial_r.npy", "comparison.png")


def save_outputs(model, x, adversarial, clean, final, output_dir, prefix=""):
    """adversarial.png, adversarial_r.npy and comparison.png for one image (on the CPU)."""
    png, npy, comparison = (output_dir / f"{prefix}{name}" for name in OUTPUTS)
    save_image(adversarial, png)
    if not torch.equal(load_image_tensor(png), adversarial):  # the file must be what was judged
        raise UserError(f"{png}: reloaded image differs from the attacked one")
    device = model.mean.device
    # The tutorial's r lives in normalised space.
    save_perturbation(model.normalize(adversarial.to(device)) - model.normalize(x.to(device)), npy)
    difference, gain = amplified_difference(x, adversarial)
    save_comparison(
        [
            (x, f"original\n{short(clean.argmax(), clean)}"),
            (adversarial, f"adversarial (PNG)\n{short(final.argmax(), final)}"),
            (difference, f"perturbation x{gain:.0f}\nmax {linf_levels(x, adversarial)}/255"),
        ],
        comparison,
    )


def linf_levels(x, adversarial):
    """Largest change of any pixel channel, in 8-bit levels."""
    return int(((adversarial - x).abs().max() * 255).round())


def attack_one(args, model, path, target):
    """The tutorial's run: one image, its progress every 5 steps, old and new prediction."""
    x = load_image_tensor(path)
    clean = predict(model, x)[0]
    original = int(clean.argmax())
    if target == original:
        raise UserError(f"{path} is already classified as {label(target)}: pick another --target")
    if target is not None:
        print(f"Target class: {label(target)}")

    def log(step, cross_entropy, predicted):
        if step % 5 == 0:
            print(f"Loss: {cross_entropy[0]:.2f} / Class: {label(predicted[0])}")

    attack = make_attack(args, model, log)
    result = attack(x, torch.tensor([original if target is None else target]))
    if not result.success[0]:
        wanted = label(target) if target is not None else f"anything but {label(original)}"
        raise AttackFailed(
            f"no adversarial image within {attack.steps} step(s) at epsilon "
            f"{args.epsilon * 255:.3g}/255 (best probability of {wanted}: "
            f"{result.best_probability[0]:.3f}); try --method sgd or pgd, more --steps, "
            "a larger --epsilon or --lr"
        )
    adversarial = result.adversarial.cpu()
    qualities = ", ".join(map(str, args.through_jpeg))
    also = f", and still after JPEG at quality {qualities}" if args.through_jpeg else ""
    print(
        f"Fooled after {int(result.steps[0])} steps "
        f"(max change {linf_levels(x, adversarial)}/255 per pixel{also})"
    )
    final = result.probabilities[0].cpu()
    save_outputs(model, x, adversarial, clean, final, args.output_dir)
    print(f"Old prediction: {label(original)}")
    print(f"New prediction: {label(final.argmax())}")


def attack_many(args, model, paths, target):
    """Many images in batches: one set of outputs per image, named after it, and a summary."""
    attack = make_attack(args, model, on_step=None)
    rows = []
    for images, errors in image_batches(paths, args.batch_size, "attacking"):
        rows += [Row(path, error="not a readable image") for path in errors]
        if images:
            rows += attack_batch(args, model, attack, images, target)
    print_summary(rows, args.output_dir / "summary.csv")
    if not all(row.success for row in rows):
        raise AttackFailed(
            f"{sum(not row.success for row in rows)} of {len(rows)} images not fooled"
        )


def attack_batch(args, model, attack, images, target):
    x = torch.cat(list(images.values()))
    clean = predict(model, x)
    original = clean.argmax(1)
    labels = original if target is None else torch.full_like(original, target)
    result = attack(x, labels)
    adversarial, final = result.adversarial.cpu(), result.probabilities.cpu()
    rows = []
    for i, path in enumerate(images):
        row = Row(path, label(original[i]), steps=int(result.steps[i]))
        if target == original[i]:
            row.error = "already the target class"
        elif result.success[i]:
            row.final, row.success = label(final[i].argmax()), True
            row.linf = linf_levels(x[i], adversarial[i])
            save_outputs(
                model,
                x[i : i + 1],
                adversarial[i : i + 1],
                clean[i],
                final[i],
                args.output_dir,
                prefix=f"{path.stem}_",
            )
        else:
            row.final, row.error = label(final[i].argmax()), "budget ran out"
        rows.append(row)
    return rows


@dataclass
class Row:
    image: Path
    original: str = ""
    final: str = ""
    success: bool = False
    steps: int | None = None
    linf: int | None = None
    error: str = ""


def print_summary(rows, csv_path):
    columns = ["image", "original", "final", "success", "steps", "linf_levels", "note"]
    table = [
        [
            str(r.image),
            r.original,
            r.final,
            "yes" if r.success else "no",
            "" if r.steps is None else str(r.steps),
            "" if r.linf is None else str(r.linf),
            r.error,
        ]
        for r in rows
    ]
    widths = [max(len(c), *(len(t[k]) for t in table)) for k, c in enumerate(columns)]
    for line in [columns, *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([columns, *table])

    write_atomically(csv_path, write)
    print(f"Summary written to {csv_path}")


def main():
    timer = Timer()
    args = parse_args()
    paths = list_images(args.images)
    target = None if args.untargeted else class_index(args.target)
    check_writable_dir(args.output_dir)
    one_image = one_file_given(args.images)
    for path in paths:
        prefix = "" if one_image else f"{path.stem}_"
        for name in OUTPUTS:
            check_not_input(args.output_dir / f"{prefix}{name}", paths)
    with timer("model load"):
        model = load_model(args.model, args.weights, pick_device(args.device))
    with timer("attack and outputs"):
        if one_image:
            attack_one(args, model, paths[0], target)
        else:
            attack_many(args, model, paths, target)
    if args.timing:
        print(f"Timing: {timer.report()}")


if __name__ == "__main__":
    run(main)
