"""Step 7: adversarial training as a regulariser, on scikit-learn's 8x8 digits.

Goodfellow et al. (2014) train on FGSM examples made against the network as it learns,
so it becomes locally constant around its training data. Two identical CNNs (same split,
initial weights and batches) learn here: one on clean digits, one on half clean, half
adversarial batches. Both are then attacked on held-out digits with the project's FGSM
and PGD. With --semi-supervised K, virtual adversarial training (Miyato et al. 2018) on
K labels per class plus the unlabelled rest is compared with training on the K labels.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import tqdm

from utils.attacks import FGSM, PGD, quantize
from utils.cli import (
    ArgumentParser,
    UserError,
    check_writable_dir,
    int_in,
    list_of,
    pixel_amount,
    positive_int,
    run,
    write_atomically,
)
from utils.models import Classifier

BATCH_SIZE = 32
LEARNING_RATE = 1e-3
TRAIN_PGD_STEPS = 7  # Madry et al.'s CIFAR-10 training budget; evaluation gets more
EVAL_PGD_STEPS = 20
TEST_FRACTION = 0.2


def parse_args():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument(
        "--epsilon",
        type=pixel_amount,
        default=0.2,
        help="L-inf bound for training, in pixels of [0, 1] (default 0.2, i.e. 51/255)",
    )
    parser.add_argument("--epochs", type=positive_int, default=15, help="default 15")
    parser.add_argument(
        "--method",
        choices=["fgsm", "pgd"],
        default="fgsm",
        help=f"attack to train on (default fgsm; pgd: {TRAIN_PGD_STEPS} steps, about 2.5x slower)",
    )
    parser.add_argument(
        "--seed", type=int_in(0, 2**32 - 1), default=0, help="split, weights, batches (default 0)"
    )
    parser.add_argument(
        "--eval-epsilons",
        type=list_of(pixel_amount),
        default="0.05,0.1,0.15,0.2,0.25,0.3",
        metavar="LIST",
        help="comma-separated bounds to attack the trained models with (default 0.05,...,0.3)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs"), help="for the plot and the weights"
    )
    parser.add_argument(
        "--semi-supervised",
        type=positive_int,
        metavar="K",
        help="instead: keep K labels per digit; VAT (FGSM at --epsilon) vs plain training",
    )
    return parser.parse_args()


def load_data(seed):
    """Digits as (N, 1, 8, 8) pixels on the 8-bit grid, split into stratified train/test."""
    digits = load_digits()
    # 0..16 ink levels -> [0, 1], rounded to what a PNG stores: clean images are valid inputs.
    x = quantize(torch.tensor(digits.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16)
    y = torch.tensor(digits.target)
    train, test = train_test_split(
        range(len(y)), test_size=TEST_FRACTION, stratify=digits.target, random_state=seed
    )
    return x[train], y[train], x[test], y[test]


def build_model(mean=0.0, std=1.0):
    """A small CNN on [0, 1] pixels; the normalisation is part of the model (and its state_dict).

    No BatchNorm or dropout: training and eval mode are the same function, so examples
    crafted mid-training attack exactly the network that is learning from them.
    """
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    return Classifier(net, mean=(mean,), std=(std,), name="digits_cnn")


def make_attack(method, model, epsilon, pgd_steps, training=False):
    """Untargeted: labels are the classes to move away from.

    For training, every step for every digit, as Goodfellow et al. and Madry et al. do
    (stopping a digit at its first mistake would give examples barely across the
    boundary), and no verdict on the result: the training step classifies it anyway.
    """
    options = dict(targeted=False, early_stop=not training, verify=not training)
    if method == "fgsm":
        return FGSM(model, epsilon, **options)
    return PGD(model, epsilon, steps=pgd_steps, **options)


def train(model, batch_loss, n, epochs, seed, name):
    """Adam over `epochs` shuffled passes of indices 0..n-1; batch_loss(model, batch) -> loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)  # every model sees the same batches
    for _ in tqdm(range(epochs), desc=f"training {name}", unit="epoch"):
        for batch in torch.randperm(n, generator=generator).split(BATCH_SIZE):
            loss = batch_loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    # From here on only attacks need gradients, and only with respect to the input.
    return model.requires_grad_(False)


def clean_loss(x, y):
    return lambda model, batch: F.cross_entropy(model(x[batch]), y[batch])


def adversarial_loss(x, y, method, epsilon):
    """Goodfellow et al.'s objective: half clean, half adversarial against the model as it is now.

    The attack differentiates with respect to its perturbation only (torch.autograd.grad),
    so the weights' .grad stay untouched until the backward pass of the loss below.
    """

    def loss(model, batch):
        attack = make_attack(method, model, epsilon, TRAIN_PGD_STEPS, training=True)
        x_adversarial = attack(x[batch], y[batch]).adversarial
        # One forward pass over clean and adversarial digits; the mean of the two halves'
        # cross-entropies is 0.5 * clean + 0.5 * adversarial.
        logits = model(torch.cat([x[batch], x_adversarial]))
        return F.cross_entropy(logits, y[batch].repeat(2))

    return loss


def pick_labelled(y, per_class, seed):
    """Indices of `per_class` random training images of each digit: the only labels kept."""
    rarest = int(torch.bincount(y).min())
    if per_class >= rarest:
        raise UserError(
            f"--semi-supervised {per_class}: must leave some digits unlabelled "
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
        picked = labelled[torch.randint(len(labelled), (BATCH_SIZE,), generator=generator)]
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
    nearby = make_attack("fgsm", model, epsilon, None, training=True)(x, log_p.argmax(1))
    log_q = model(nearby.adversarial).log_softmax(1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


def accuracy(model, x, y):
    with torch.inference_mode():
        return (model(x).argmax(1) == y).float().mean().item()


def evaluate(model, x, y, epsilons, name):
    """{"FGSM": [...], "PGD": [...]}: accuracy on the attacked images, clean (epsilon 0) first."""
    clean = accuracy(model, x, y)
    results = {"FGSM": [clean], "PGD": [clean]}
    for epsilon in tqdm(epsilons, desc=f"attacking {name}", unit="epsilon"):
        for attack in results:
            result = make_attack(attack.lower(), model, epsilon, EVAL_PGD_STEPS)(x, y)
            # The attack has classified each digit as attacked: accurate = not fooled.
            results[attack].append(1 - result.success.float().mean().item())
    return results


def print_table(results, epsilons):
    """Rows: epsilon (clean first); columns: model x attack."""
    columns = [(name, attack) for name in results for attack in ("FGSM", "PGD")]
    width = max(len(f"{name} {attack}") for name, attack in columns) + 3
    print("epsilon" + "".join(f"{f'{name} {attack}':>{width}}" for name, attack in columns))
    for i, epsilon in enumerate([0, *epsilons]):
        cells = "".join(f"{results[name][attack][i]:>{width}.1%}" for name, attack in columns)
        print(f"{'clean' if i == 0 else f'{epsilon:g}':<7}{cells}")


def plot(results, epsilons, train_epsilon, title, path):
    # The object-oriented API renders with Agg and never opens a window.
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    for color, (name, by_attack) in zip(("C0", "C1"), results.items(), strict=True):
        for attack, style in (("FGSM", "--"), ("PGD", "-")):
            axes.plot(
                [0, *epsilons],
                by_attack[attack],
                style,
                color=color,
                marker="o",
                label=f"{name} model, {attack}",
            )
    axes.axvline(train_epsilon, color="grey", linestyle=":", label="training epsilon")
    axes.set(
        title=title,
        xlabel="epsilon (L-inf, pixels in [0, 1])",
        ylabel="test accuracy",
        ylim=(0, 1.02),
    )
    axes.legend()
    write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))


def main():
    args = parse_args()
    # Tiny batches: one thread beats splitting each small op (and 2 cores may be shared).
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_data(args.seed)
    if args.semi_supervised:  # checked before the folder is made: a bad K writes nothing
        labelled = pick_labelled(y_train, args.semi_supervised, args.seed)
    check_writable_dir(args.output_dir)

    if args.semi_supervised:
        losses = {
            "supervised": semi_supervised_loss(x_train, y_train, labelled, args.seed),
            "vat": semi_supervised_loss(x_train, y_train, labelled, args.seed, args.epsilon),
        }
        plot_name = "semi_supervised.png"
        title = f"{args.semi_supervised} labels per digit: supervised vs VAT"
        print(f"{len(labelled)} labelled digits, {len(y_train) - len(labelled)} unlabelled")
    else:
        losses = {
            "standard": clean_loss(x_train, y_train),
            "adversarial": adversarial_loss(x_train, y_train, args.method, args.epsilon),
        }
        plot_name = "robustness.png"
        title = f"Standard vs {args.method.upper()} adversarial training"

    # The data's own statistics, stored in the model, so attacks still see [0, 1] pixels.
    mean, std = x_train.mean().item(), x_train.std().item()
    models = {}
    for name, loss in losses.items():
        torch.manual_seed(args.seed)  # same initial weights for both models
        models[name] = train(
            build_model(mean, std), loss, len(y_train), args.epochs, args.seed, name
        )

    torch.manual_seed(args.seed)  # PGD starts at random points: same seed, same table
    results = {
        name: evaluate(model, x_test, y_test, args.eval_epsilons, name)
        for name, model in models.items()
    }
    print(f"Accuracy on {len(y_test)} held-out digits, clean and under attack:")
    print_table(results, args.eval_epsilons)

    plot(results, args.eval_epsilons, args.epsilon, title, args.output_dir / plot_name)
    for name, model in models.items():
        path = args.output_dir / f"digits_{name}.pth"
        write_atomically(path, lambda tmp, model=model: torch.save(model.state_dict(), tmp))
    saved = ", ".join([plot_name, *(f"digits_{name}.pth" for name in models)])
    print(f"Saved {saved} in {args.output_dir}")


if __name__ == "__main__":
    run(main)
