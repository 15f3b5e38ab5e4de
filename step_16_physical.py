"""Step 16: an adversarial example that survives the camera. Expectation over Transformation
(EOT, Athalye, Engstrom, Ilyas and Kwok 2018): attack the mean loss over a distribution of
transformations standing in for print-and-photograph (rotation, scale, shift, light,
blur, JPEG), not the one image on disk, and measure both on fresh photographs.

Writes adversarial_plain.png (plain PGD) and adversarial_eot.png (EOT), both within the
same epsilon; --photos: several labelled photos at once, with the spread of the rates."""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial.attacks import EOT, PGD
from adversarial.models import load_model, pick_device, predict
from adversarial.physical import measure, print_one_change, print_report, report_writers
from adversarial.plumbing import cli
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_outputs, write_all
from adversarial.plumbing.images import checked_image_writer, load_image_tensor
from adversarial.plumbing.labels import class_index, label
from adversarial.plumbing.outputs import linf_levels
from adversarial.plumbing.samples import (
    IMAGENET_PHOTOS,
    recorded_true_class,
    sample_photo,
    true_class,
)
from adversarial.plumbing.tables import epsilon_text
from adversarial.transforms import Camera


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("image", nargs="?", type=Path, help="the photo to attack")
    photos = cli.list_of(cli.one_of(IMAGENET_PHOTOS), keep_order=True)
    parser.add_argument("--photos", type=photos, help="labelled photos instead, e.g. imagenet_01")
    parser.add_argument("--target", default="1", help="class name or index (default: goldfish)")
    parser.add_argument(
        "--epsilon", type=cli.pixel_amount, default=8 / 255, help="L-inf bound (default 8/255)"
    )
    parser.add_argument("--steps", type=cli.int_in(1, 1000), default=20, help="default 20")
    parser.add_argument(
        "--samples", type=cli.int_in(1, 256), default=8, help="EOT: transformations per step"
    )
    parser.add_argument(
        "--fresh", type=cli.int_in(1, 10_000), default=100, help="transformations measured"
    )
    parser.add_argument(
        "--draws", type=cli.int_in(1, 1000), default=4, help="transformations per plotted angle"
    )
    parser.add_argument(
        "--angles",
        type=cli.list_of(cli.degrees),
        default="-45,-30,-15,0,15,30,45",
        help="the plot's rotations, beyond the 22.5 degrees sampled (default -45,-30,...,45)",
    )
    parser.add_argument(
        "--seed", type=cli.int_in(0, 2**63 - 1), default=0, help="PGD's start, the draws"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("outputs"), help="for every file")
    cli.add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if (args.image is None) == (args.photos is None):
        raise UserError("give one image, or --photos")
    target = class_index(args.target)
    names = [args.image.name] if args.image else list(args.photos)
    prefixes = [""] if args.image else [f"{name}_" for name in names]
    pngs = {
        kind: [args.output_dir / f"{p}adversarial_{kind}.png" for p in prefixes]
        for kind in ("plain", "eot")
    }
    plot, csv = args.output_dir / "physical.png", args.output_dir / "physical.csv"
    check_outputs([*pngs["plain"], *pngs["eot"], plot, csv], [args.image, args.weights])
    if args.image:  # a bad file fails before the model loads
        x = load_image_tensor(args.image)
    else:
        x = torch.cat([sample_photo(name) for name in names])
    model = load_model(args.model, args.weights, pick_device(args.device))

    # Each photo's own class: its true class where it has one, else the model's.
    classes = predict(model, x).argmax(1).cpu()
    known = [recorded_true_class(args.image)] if args.image else map(true_class, names)
    own = torch.tensor([c if t is None else t for c, t in zip(classes, known, strict=True)])
    if (own == target).any():
        name = names[int((own == target).nonzero()[0, 0])]
        raise UserError(f"{name} is already {label(target)}: pick another --target")
    for name, c in zip(names, classes, strict=True):
        print(f"{name}: {label(c)}")
    print(f"Target: {label(target)}; epsilon {epsilon_text(args.epsilon)} on the saved PNG")
    labels = torch.full_like(own, target)

    # Plain PGD: the example fits the one image on disk.
    pgd = PGD(model, args.epsilon, args.steps, seed=args.seed, early_stop=False)
    plain = pgd(x, labels).adversarial.cpu()
    print(f"Plain PGD: {args.steps} steps, {args.steps} gradients per photo")

    # EOT: each step, the mean gradient over freshly sampled photographs of the PNG.
    camera = Camera()

    def progress(step, loss, predicted):
        if step < args.steps and (step % 10 == 0 or step == args.steps - 1):
            share = (predicted == target).float().mean()
            print(f"EOT step {step}: loss {loss.mean():.2f}, sampled views on target {share:.0%}")

    eot = EOT(
        model, args.epsilon, camera, args.steps, args.samples, seed=args.seed, on_step=progress
    )
    robust = eot(x, labels).adversarial.cpu()
    gradients = args.steps * args.samples
    print(f"EOT: {args.steps} steps of {args.samples} photographs, {gradients} gradients per photo")

    # Measured on the saved PNGs (each file is read back and must hold these pixels).
    measured = measure(
        model, x, plain, robust, own, target, camera, args.angles, args.fresh, args.draws, args.seed
    )
    print_one_change(model, x, plain, robust, own, target)
    print_report(measured, names, own, target, args.fresh)
    title = f"{model.name}, epsilon {epsilon_text(args.epsilon)}, {len(names)} photo(s)"
    writers = report_writers(
        measured, names, own, target, args.angles, camera.max_angle, title, plot, csv
    )
    for i in range(len(names)):
        writers[pngs["plain"][i]] = checked_image_writer(plain[i : i + 1], pngs["plain"][i])
        writers[pngs["eot"][i]] = checked_image_writer(robust[i : i + 1], pngs["eot"][i])
    write_all(writers)
    change = max(linf_levels(x, plain), linf_levels(x, robust))
    print(f"Max change {change}/255 per pixel; wrote {', '.join(map(str, writers))}")


if __name__ == "__main__":
    run(main)
