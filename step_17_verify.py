"""Step 17: a proof, not a sample. Is there ANY 8-bit image within L-inf epsilon of this
digit that changes its class? Three answers for the same held-out digits, on a network
small enough to answer exactly (64 pixels, two ReLU layers, 10 logits):

- PGD finds such an image (not robust, for certain) or not (robust, perhaps);
- the exact mixed-integer program (Tjeng et al. 2019; SciPy's milp, HiGHS) says robust,
  or gives such an image, checked by a forward pass and saved as a PNG;
- the relaxations, IBP (Gowal et al. 2018) and CROWN (Zhang et al. 2018), certify or say
  "unknown".

Three networks are trained by the step (standard, PGD-trained, IBP-trained, at --epsilon);
then the smallest epsilon of a few digits, and clean, PGD and certified accuracy by epsilon."""

from adversarial.plumbing.script import run

from pathlib import Path

import torch

from adversarial import digits, three_answers
from adversarial.plumbing import cli
from adversarial.plumbing.files import check_outputs, write_all
from adversarial.plumbing.images import grey_writer
from adversarial.plumbing.tables import csv_writer


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--epsilon", type=cli.pixel_amount, default=0.1, help="L-inf, pixels in [0, 1] (0.1)"
    )
    parser.add_argument("--seed", type=cli.int_in(0, 2**32 - 1), default=0, help="default 0")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs/verify"), help="for every file"
    )
    parser.add_argument("--epochs", type=cli.int_in(1, 1000), default=20, help="default 20")
    parser.add_argument(
        "--hidden",
        type=cli.layer_sizes,
        default="32,32",
        help="units of each hidden ReLU layer (default 32,32)",
    )
    parser.add_argument(
        "--digits-count",
        type=cli.int_in(1, 360),
        default=20,
        help="the first held-out digits to answer three ways (default 20 of 360)",
    )
    parser.add_argument(
        "--time-limit", type=cli.positive_float, default=10, help="MILP seconds per digit (10)"
    )
    parser.add_argument(
        "--bisect", type=cli.int_in(0, 360), default=2, help="digits to bisect (default 2)"
    )
    parser.add_argument(
        "--eval-epsilons",
        type=cli.list_of(cli.pixel_amount),
        default="0.02,0.05,0.1,0.15,0.2",
        metavar="LIST",
        help="epsilons of the training table (default 0.02,0.05,0.1,0.15,0.2)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)  # tiny networks; 2 cores may be shared
    x_train, y_train, x_test, y_test = digits.load_data(args.seed)
    _, test_indices = digits.split_indices(args.seed)  # each digit's index in load_digits()
    n, out = args.digits_count, args.output_dir
    # Every counterexample file this run may write, so that none is a surprise.
    pngs = {
        (name, index): out / f"counterexample_{name}_{index}.png"
        for name in three_answers.MODELS
        for index in test_indices[:n]
    }
    tables = [out / "verify.csv", out / "training.png", out / "training.csv"]
    check_outputs([*tables, *pngs.values()], [])
    models = three_answers.train_all(
        x_train, y_train, args.epsilon, args.epochs, args.hidden, args.seed
    )
    hidden = " -> ".join(map(str, args.hidden))
    print(f"Networks 64 -> {hidden} -> 10 (ReLU), trained {args.epochs} epochs at {args.epsilon:g}")

    # 1. Three answers for the same digits.
    answers = {
        name: three_answers.answer_all(
            model, x_test[:n], y_test[:n], args.epsilon, args.time_limit, args.seed
        )
        for name, model in models.items()
    }
    rows, counterexamples = three_answers.report_answers(
        answers, y_test[:n], test_indices[:n], args.epsilon
    )

    # 2. How far each answer reaches: the smallest epsilon that changes the class.
    if args.bisect:
        three_answers.minimal_epsilons(
            models, x_test, y_test, test_indices, args.bisect, args.time_limit, args.seed
        )

    # 3. Training for the proof: all held-out digits, by epsilon.
    results = three_answers.by_epsilon(models, x_test, y_test, args.eval_epsilons, args.seed)
    files = three_answers.report_training(
        results, args.eval_epsilons, len(y_test), args.epsilon, *tables[1:]
    )
    header = ["model", "digit", "label", "epsilon", "pgd", "exact", "ibp", "linear"]
    files[tables[0]] = csv_writer(header, rows)
    for key, image in counterexamples.items():
        files[pngs[key]] = grey_writer(image, pngs[key])
    write_all(files)
    for key, path in pngs.items():  # an earlier run's, which this run's CSV contradicts
        if key not in counterexamples:
            path.unlink(missing_ok=True)
    saved = {key: pngs[key] for key in counterexamples}
    checked = three_answers.check_saved(
        models, saved, x_test[:n], y_test[:n], test_indices[:n], args.epsilon
    )
    print(f"\nSaved verify.csv, training.png, training.csv and {checked} counterexample PNGs")
    print(f"in {out}, each read back: it fools its network, within epsilon of its digit")


if __name__ == "__main__":
    run(main)
