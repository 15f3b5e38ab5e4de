"""Step 8: virtual adversarial training (Miyato et al. 2018) learns from unlabelled digits.

A model should not change its *own* prediction under a small perturbation: that needs no
label. Keep K labels per digit; train three CNNs: on them alone (supervised), with step 7's
adversarial training on them alone (adversarial), and with VAT's smoothness term on all
training digits as well, whose labels it never reads (vat). Same split, initial weights
and labelled batches; all are then attacked like step 7's models.
"""

from adversarial.plumbing.script import run

import torch
import torch.nn.functional as F

from adversarial import digits
from adversarial.plumbing import cli
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_outputs
from adversarial.training import goodfellow_loss, smoothness_loss


def pick_labelled(y, per_class, seed):
    """Indices of `per_class` random training images of each digit: the only labels kept."""
    rarest = int(torch.bincount(y).min())
    if per_class >= rarest:
        raise UserError(
            f"--labels {per_class}: must leave some digits unlabelled "
            f"(the training split has {rarest} of its rarest digit)"
        )
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return torch.cat([order[y[order] == digit][:per_class] for digit in range(10)])


def semi_supervised_loss(x, y, labelled, seed, objective="supervised", epsilon=None):
    """The loss of one batch. Every objective reads a random batch of the labelled digits:
    supervised: their cross-entropy alone; adversarial: Goodfellow et al.'s adversarial
    training on them (step 7's objective, the labelled digits only); vat: their
    cross-entropy plus VAT's smoothness term on `batch`, drawn from all training digits,
    whose labels it never reads. An epoch is one pass over all training digits, for every
    model, so all take the same number of steps."""
    generator = torch.Generator().manual_seed(seed)  # every model gets the same labelled batches

    def loss(model, batch):
        picked = labelled[torch.randint(len(labelled), (digits.BATCH_SIZE,), generator=generator)]
        if objective == "adversarial":
            return goodfellow_loss(model, x[picked], y[picked], epsilon)
        supervised = F.cross_entropy(model(x[picked]), y[picked])
        if objective == "vat":
            return supervised + smoothness_loss(model, x[batch], epsilon)
        return supervised

    return loss


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_digits_arguments(parser)
    parser.add_argument(
        "--labels", type=cli.int_in(1, 1000), default=10, metavar="K", help="per digit (default 10)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny batches: see step 7

    x_train, y_train, x_test, y_test = digits.load_data(args.seed)
    labelled = pick_labelled(y_train, args.labels, args.seed)
    losses = {
        objective: semi_supervised_loss(
            x_train, y_train, labelled, args.seed, objective, args.epsilon
        )
        for objective in ("supervised", "adversarial", "vat")
    }
    plot = args.output_dir / "semi_supervised.png"
    check_outputs(digits.output_files(plot, losses), [])  # before any training
    print(f"{len(labelled)} labelled digits, {len(y_train) - len(labelled)} unlabelled")
    models = digits.train_models(losses, x_train, args.epochs, args.seed)
    title = f"{args.labels} labels per digit: supervised, adversarial, VAT"
    results = digits.evaluate_all(models, x_test, y_test, args.eval_epsilons, args.seed)
    digits.report(models, results, args.eval_epsilons, args.epsilon, title, plot)


if __name__ == "__main__":
    run(main)
