"""Step 7: adversarial training as a regulariser, on scikit-learn's 8x8 digits.

Goodfellow et al. (2014) train on FGSM examples made against the network as it learns, so
it becomes locally constant around its training data. Two identical CNNs (same split,
initial weights and batches) learn here: one on clean digits, one on half clean, half
adversarial batches. Both are then attacked on held-out digits with FGSM and PGD.
"""

import utils.startup  # noqa: F401  (first: Ctrl-C while PyTorch loads exits quietly)

import torch
import torch.nn.functional as F

from utils import cli, digits
from utils.files import check_outputs


def adversarial_loss(x, y, method, epsilon):
    """Goodfellow et al.'s objective: half clean, half adversarial against the model as it is now.

    The attack differentiates with respect to its perturbation only (torch.autograd.grad),
    so the weights' .grad stay untouched until the backward pass of the loss below.
    """

    def loss(model, batch):
        attack = digits.make_attack(method, model, epsilon, training=True)
        x_adversarial = attack(x[batch], y[batch]).adversarial
        # One forward pass over clean and adversarial digits; the mean of the two halves'
        # cross-entropies is 0.5 * clean + 0.5 * adversarial.
        logits = model(torch.cat([x[batch], x_adversarial]))
        return F.cross_entropy(logits, y[batch].repeat(2))

    return loss


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_digits_arguments(parser)
    parser.add_argument(
        "--method",
        choices=["fgsm", "pgd"],
        default="fgsm",
        help=f"attack to train on (default fgsm; pgd: {digits.TRAIN_PGD_STEPS} steps, slower)",
    )
    args = parser.parse_args(argv)
    # Tiny batches: one thread beats splitting each small op (and 2 cores may be shared).
    torch.set_num_threads(1)

    x_train, y_train, x_test, y_test = digits.load_data(args.seed)
    losses = {
        "standard": digits.clean_loss(x_train, y_train),
        "adversarial": adversarial_loss(x_train, y_train, args.method, args.epsilon),
    }
    plot = args.output_dir / "robustness.png"
    check_outputs(digits.output_files(plot, losses), [])  # before any training
    models = digits.train_models(losses, x_train, args.epochs, args.seed)
    title = f"Standard vs {args.method.upper()} adversarial training"
    results = digits.evaluate_all(models, x_test, y_test, args.eval_epsilons, args.seed)
    digits.report(models, results, args.eval_epsilons, args.epsilon, title, plot)


if __name__ == "__main__":
    cli.run(main)
