"""Step 8: virtual adversarial training (Miyato et al. 2018) learns from unlabelled digits.

A model should not change its *own* prediction under a small perturbation: that needs no
label. Keep K labels per digit; train one CNN on them alone (supervised) and one with VAT's
smoothness term on all training digits as well, whose labels it never reads (vat). Same
split, initial weights and labelled batches; both are then attacked like step 7's models.
"""

import utils.startup  # noqa: F401  (first: Ctrl-C while PyTorch loads exits quietly)

import torch
import torch.nn.functional as F

from utils import cli, digits
from utils.errors import UserError
from utils.files import check_outputs


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


def semi_supervised_loss(x, y, labelled, seed, vat_epsilon=None):
    """Cross-entropy on a random batch of the labelled digits; with vat_epsilon, plus VAT's
    smoothness term on `batch`, drawn from all training digits, whose labels it never reads.
    An epoch is one pass over all training digits, for both models."""
    generator = torch.Generator().manual_seed(seed)  # both models get the same labelled batches

    def loss(model, batch):
        picked = labelled[torch.randint(len(labelled), (digits.BATCH_SIZE,), generator=generator)]
        supervised = F.cross_entropy(model(x[picked]), y[picked])
        if vat_epsilon is None:
            return supervised
        return supervised + smoothness_loss(model, x[batch], vat_epsilon)

    return loss


def smoothness_loss(model, x, epsilon):
    """VAT's term: KL divergence between the predictions at x and at the nearby x' that
    changes them most. Miyato et al. find x' by an L2 power iteration; here the project's
    FGSM finds it in the L-inf ball, pushing away from the model's own predicted class."""
    with torch.no_grad():  # the prediction at x is the target, held fixed (their theta-hat)
        log_p = model(x).log_softmax(1)
    nearby = digits.make_attack("fgsm", model, epsilon, training=True)(x, log_p.argmax(1))
    log_q = model(nearby.adversarial).log_softmax(1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


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
        "supervised": semi_supervised_loss(x_train, y_train, labelled, args.seed),
        "vat": semi_supervised_loss(x_train, y_train, labelled, args.seed, args.epsilon),
    }
    plot = args.output_dir / "semi_supervised.png"
    check_outputs(digits.output_files(plot, losses), [])  # before any training
    print(f"{len(labelled)} labelled digits, {len(y_train) - len(labelled)} unlabelled")
    models = digits.train_models(losses, x_train, args.epochs, args.seed)
    title = f"{args.labels} labels per digit: supervised vs VAT"
    results = digits.evaluate_all(models, x_test, y_test, args.eval_epsilons, args.seed)
    digits.report(models, results, args.eval_epsilons, args.epsilon, title, plot)


if __name__ == "__main__":
    cli.run(main)
