"""Step 13: how small can it be? No budget this time: minimal-perturbation attacks find the
smallest change that fools the model, measured three ways (L2: its energy, L-inf: the
largest change of one pixel, L0: how many pixels change), before and after saving as PNG.
Then the scoreboard: every attack of the course on the same photo, side by side.

--sweep: DeepFool's minimal L2 over the labelled photos, per model; --models: step 7's
models, standard against adversarially trained, in L2 and L-inf."""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial import how_small
from adversarial.models import load_model, models_at_hand, other_models, pick_device, predict
from adversarial.plumbing import cli
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_outputs, write_all
from adversarial.plumbing.images import checked_image_writer, load_image_tensor
from adversarial.plumbing.labels import class_index, label
from adversarial.plumbing.samples import IMAGENET_PHOTOS, recorded_true_class
from adversarial.plumbing.tables import csv_writer, epsilon_text
from adversarial.transfer import references

DEFAULTS = how_small.Settings()  # step 5's budget for SGD and PGD, step 10's for Square


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("image", nargs="?", type=Path, help="the image to attack")
    parser.add_argument("--target", default="1", help="class name or index (default: goldfish)")
    parser.add_argument("--untargeted", action="store_true", help="any class but the image's")
    budget = cli.int_in(1, 100_000)  # the defaults: how_small.Settings
    parser.add_argument("--epsilon", type=cli.pixel_amount, default=DEFAULTS.epsilon, help="bound")
    parser.add_argument("--steps", type=budget, default=DEFAULTS.steps, help="SGD's, PGD's")
    parser.add_argument("--queries", type=budget, default=DEFAULTS.queries, help="Square's")
    parser.add_argument("--cw-searches", type=budget, default=DEFAULTS.cw_searches, help="CW's c")
    parser.add_argument("--cw-steps", type=budget, default=DEFAULTS.cw_steps, help="CW's, per c")
    parser.add_argument("--max-pixels", type=budget, default=DEFAULTS.max_pixels, help="L0's")
    parser.add_argument("--seed", type=cli.int_in(0, 2**32 - 1), default=0, help="PGD, Square")
    parser.add_argument("--sweep", action="store_true", help="minimal L2 over labelled photos")
    photos = cli.list_of(cli.one_of(IMAGENET_PHOTOS), keep_order=True)
    parser.add_argument(
        "--photos", type=photos, default=",".join(IMAGENET_PHOTOS), help="default all"
    )
    parser.add_argument("--models", type=Path, nargs="+", help="step 7's weights files")
    cli.add_output_dir(parser, "outputs/minimal", "the images, tables and pictures")
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


def settings_of(args):
    return DEFAULTS._replace(
        epsilon=args.epsilon,
        steps=args.steps,
        queries=args.queries,
        cw_searches=args.cw_searches,
        cw_steps=args.cw_steps,
        max_pixels=args.max_pixels,
        seed=args.seed,
    )


def attack_one(args):
    """The minimal examples as the papers leave them and as saved; then the scoreboard."""
    x = load_image_tensor(args.image)  # a bad file fails before the model loads
    device = pick_device(args.device)
    model = load_model(args.model, args.weights, device)
    original = int(predict(model, x)[0].argmax())
    target = None if args.untargeted else class_index(args.target)
    known = recorded_true_class(args.image)  # step 1 records a labelled photo's class
    if target == original:
        raise UserError(f"{args.image} is already {label(target)}: pick another --target")
    if target is None and known is not None and known != original:
        raise UserError(f"{args.image} is {label(known)}, the model sees {label(original)}")
    models = [model, *other_models(model, device=device)]  # before any work
    targeted, settings = target is not None, settings_of(args)
    labels = torch.tensor([target if targeted else original])
    minimal = how_small.minimal_attacks(model, settings, targeted, grid=True)
    every = {**how_small.budget_attacks(model, settings, targeted), **minimal}
    files = {name: args.output_dir / f"{slug(name)}.png" for name in every}
    csv_path, picture = args.output_dir / "scoreboard.csv", args.output_dir / "scoreboard.png"
    check_outputs([*files.values(), csv_path, picture], [args.image, args.weights])
    print(f"Target class: {label(target)}" if targeted else f"Class: {label(original)}")

    # 1. As the papers run them: on floats, stopping just past the boundary. Saved as PNG,
    # each pixel is rounded to the nearest level: does the example survive?
    print("\nThe minimal attacks as the papers run them (on floats), and their PNGs:")
    floats = how_small.minimal_attacks(model, settings, targeted, grid=False)
    floats_runs = how_small.run_attacks(floats, x, labels, "on floats")
    how_small.rounding_table(model, x, labels, targeted, floats_runs)

    # 2. Every attack, each iterate judged as its PNG would hold it; the PNGs and the table
    # written together, each PNG read back to check it holds exactly the image judged.
    runs = how_small.run_attacks(every, x, labels)
    budget = f"within {epsilon_text(args.epsilon)}"
    goals = {name: budget if name not in minimal else "smallest" for name in every}
    reference = references(models, x, [known])
    print(f"\nThe scoreboard: every attack's saved PNG ({args.output_dir}/), on {model.name}:")
    header, rows = how_small.scoreboard(x, runs, goals, models, reference, target)
    pngs = {
        files[name]: checked_image_writer(run.adversarial, files[name])
        for name, run in runs.items()
    }
    figure = how_small.scoreboard_writer(x, runs, floats_runs, rows, picture)
    write_all({**pngs, csv_path: csv_writer(header, rows), picture: figure})


def slug(name):
    """'DeepFool L-inf' -> 'deepfool_l-inf': the attack's PNG file name."""
    return name.lower().replace(" ", "_").replace("(", "").replace(")", "")


def sweep(args):
    """DeepFool's minimal L2 on the grid, per model, over the labelled photos."""
    csv_path, picture = args.output_dir / "minimal_l2.csv", args.output_dir / "minimal_l2.png"
    check_outputs([csv_path, picture], [args.weights])
    device = pick_device(args.device)
    # --weights: the file of --model (ResNet18's with auto), as for one image.
    named = "resnet18" if args.model == "auto" else args.model
    own = {named: args.weights} if args.weights else {}
    names = models_at_hand(own.get("resnet18"))
    models = [load_model(name, own.get(name), device) for name in names]
    how_small.minimal_l2_over_photos(models, args.photos, csv_path, picture)


def on_digits(args):
    """Step 7's models on their held-out digits: the smallest L2 and L-inf found."""
    from adversarial import digits

    picture = args.output_dir / "minimal_digits.png"
    check_outputs([picture], args.models)
    models = digits.load_named(args.models)  # distinct names, even for two of one name
    _, _, x_test, y_test = digits.load_data(args.seed)  # step 7's split for the same seed
    how_small.compare_on_digits(models, x_test, y_test, settings_of(args), picture)


if __name__ == "__main__":
    run(main)
