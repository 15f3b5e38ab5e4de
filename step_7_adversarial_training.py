"""Step 7: adversarial training as a regulariser, on scikit-learn's 8x8 digits.

Two identical CNNs (same split, initial weights and batches) learn: one on clean digits,
one on adversarial examples made against it as it learns, with Goodfellow et al.'s FGSM
objective (half clean, half adversarial) or Madry et al.'s PGD one (adversarial alone).
Both are then attacked on held-out digits with FGSM and PGD.
"""

from adversarial.plumbing.script import run

import torch

from adversarial import digits
from adversarial.plumbing import cli
from adversarial.plumbing.files import check_outputs
from adversarial.training import MADRY_PGD_STEPS, goodfellow_loss, madry_loss

OBJECTIVES = {"fgsm": goodfellow_loss, "pgd": madry_loss}


def adversarial_loss(x, y, method, epsilon):
    """The loss of one batch under the chosen objective (see adversarial/training.py)."""
    objective = OBJECTIVES[method]
    return lambda model, batch: objective(model, x[batch], y[batch], epsilon)


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_digits_arguments(parser)
    parser.add_argument(
        "--method",
        choices=list(OBJECTIVES),
        default="fgsm",
        help="fgsm: Goodfellow et al.'s half-and-half (default); "
        f"pgd: Madry et al.'s, {MADRY_PGD_STEPS} PGD steps, slower",
    )
    args = parser.parse_args(argv)
    # Tiny batches: one thread beats splitting each small op (and 2 cores may be shared).
    torch.set_num_threads(1)

    x_train, y_train, x_test, y_test = digits.load_data(args.seed)
    losses = {
        "standard": digits.clean_loss(x_train, y_train),
        f"{args.method}_trained": adversarial_loss(x_train, y_train, args.method, args.epsilon),
    }
    # Each method its own plot; the standard model is the same in both (same seed, batches).
    name = "robustness.png" if args.method == "fgsm" else f"robustness_{args.method}.png"
    plot = args.output_dir / name
    check_outputs(digits.output_files(plot, losses), [])  # before any training
    models = digits.train_models(losses, x_train, args.epochs, args.seed)
    title = f"Standard vs {args.method.upper()}-trained"
    results = digits.evaluate_all(models, x_test, y_test, args.eval_epsilons, args.seed)
    digits.report(models, results, args.eval_epsilons, args.epsilon, title, plot)


if __name__ == "__main__":
    run(main)
