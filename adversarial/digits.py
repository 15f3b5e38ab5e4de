"""Steps 7 and 8's lab: scikit-learn's 8x8 digits, a small CNN, its training loop, and its
evaluation under the project's FGSM and PGD. Small enough to train in seconds on a CPU.

    from adversarial.digits import build_model, load_data
"""

import torch
import torch.nn.functional as F
from torch import nn

from adversarial.attacks import FGSM, PGD, quantize
from adversarial.models import Classifier
from adversarial.plumbing.figures import curves_writer
from adversarial.plumbing.files import write_all
from adversarial.plumbing.progress import progress
from adversarial.plumbing.tables import epsilon_text, print_table

BATCH_SIZE = 32
LEARNING_RATE = 1e-3
EVAL_PGD_STEPS = 20
TEST_FRACTION = 0.2


def load_data(seed):
    """Digits as (N, 1, 8, 8) pixels on the 8-bit grid, split into stratified train/test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 ink levels -> [0, 1], rounded to what a PNG stores: clean images are valid inputs.
    x = quantize(torch.tensor(digits.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16)
    y = torch.tensor(digits.target)
    train, test = split_indices(seed)
    return x[train], y[train], x[test], y[test]


def split_indices(seed):
    """The indices in load_digits() of load_data's train and test digits, in their order."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    return train_test_split(
        range(len(target)), test_size=TEST_FRACTION, stratify=target, random_state=seed
    )


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


def load_trained(path):
    """A digits CNN saved by steps 7, 8 or 12 (its state_dict, normalisation included),
    read with the project's checks, frozen."""
    from adversarial.plumbing.weights import load_state_dict

    model = build_model()
    load_state_dict(model, path, "a digits CNN (steps 7, 8, 12)")
    return model.requires_grad_(False)


def load_named(paths):
    """{name: model} for weights files given on a command line (steps 10 and 13's --digits):
    'standard' for digits_standard.pth; two files of one name are told apart by their paths
    as given ('a/digits_standard.pth'), never one for the other. One file twice is refused."""
    from pathlib import Path

    from adversarial.plumbing.errors import UserError

    paths, seen = [Path(path) for path in paths], {}
    for path in paths:
        if path.resolve() in seen:
            raise UserError(f"{path}: given twice (as {seen[path.resolve()]} too)")
        seen[path.resolve()] = path
    stems = [path.stem.removeprefix("digits_") for path in paths]
    names = [
        stem if stems.count(stem) == 1 else str(path)
        for stem, path in zip(stems, paths, strict=True)
    ]
    return {name: load_trained(path) for name, path in zip(names, paths, strict=True)}


def make_attack(method, model, epsilon):
    """The evaluation attacks, untargeted: labels are the true classes, to move away from.
    PGD takes 20 steps of epsilon/4 from a random start; each digit counts as lost from
    the first step that fools it."""
    if method == "fgsm":
        return FGSM(model, epsilon, targeted=False)
    return PGD(model, epsilon, steps=EVAL_PGD_STEPS, targeted=False)


def train_models(losses, x_train, epochs, seed):
    """{name: batch_loss(model, batch) -> loss} -> {name: trained model}: the same initial
    weights and the same batches for every model, so only the loss differs."""
    # The data's own statistics, stored in the model, so attacks still see [0, 1] pixels.
    mean, std = x_train.mean().item(), x_train.std().item()
    models = {}
    for name, loss in losses.items():
        torch.manual_seed(seed)  # same initial weights
        models[name] = train(build_model(mean, std), loss, len(x_train), epochs, seed, name)
    return models


def train(model, batch_loss, n, epochs, seed, name):
    """Adam over `epochs` shuffled passes of indices 0..n-1; batch_loss(model, batch) -> loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)  # every model sees the same batches
    for _ in progress(range(epochs), f"training {name}", unit="epoch"):
        for batch in torch.randperm(n, generator=generator).split(BATCH_SIZE):
            loss = batch_loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    # From here on only attacks need gradients, and only with respect to the input.
    return model.requires_grad_(False)


def clean_loss(x, y):
    return lambda model, batch: F.cross_entropy(model(x[batch]), y[batch])


def noisy_loss(x, y, sigma):
    """Gaussian noise augmentation (Cohen et al.'s base classifiers): each digit of each
    batch gets fresh noise of standard deviation sigma, in [0, 1] pixel space, before the
    model's own normalisation; no clamping, as at certification."""

    def loss(model, batch):
        clean = x[batch]
        return F.cross_entropy(model(clean + torch.randn_like(clean) * sigma), y[batch])

    return loss


def accuracy(model, x, y):
    with torch.inference_mode():
        return (model(x).argmax(1) == y).float().mean().item()


def evaluate(model, x, y, epsilons, name):
    """{"FGSM": [...], "PGD": [...]}: accuracy on the attacked images, clean (epsilon 0) first.

    Each attack judges the digits as attacked: accurate means not fooled.
    """
    clean = accuracy(model, x, y)
    results = {"FGSM": [clean], "PGD": [clean]}
    for epsilon in progress(epsilons, f"attacking {name}", unit="epsilon"):
        for attack in results:
            result = make_attack(attack.lower(), model, epsilon)(x, y)
            results[attack].append(1 - result.success.float().mean().item())
    return results


def output_files(plot, model_names):
    """The plot and one weights file per model, beside it: what report() writes."""
    return [plot, *(plot.parent / f"digits_{name}.pth" for name in model_names)]


def evaluate_all(models, x_test, y_test, epsilons, seed):
    """{model name: evaluate(...)}: every model attacked at every epsilon."""
    torch.manual_seed(seed)  # PGD starts at random points: same seed, same table
    return {name: evaluate(m, x_test, y_test, epsilons, name) for name, m in models.items()}


def report(models, results, epsilons, train_epsilon, title, plot):
    """Print the accuracy table; save the plot and every model's weights beside it."""
    from adversarial.plumbing.weights import state_dict_writer

    columns = [(name, attack) for name in results for attack in ("FGSM", "PGD")]
    rows = [
        ["clean" if i == 0 else epsilon_text(epsilon)]
        + [f"{results[name][attack][i]:.1%}" for name, attack in columns]
        for i, epsilon in enumerate([0, *epsilons])
    ]
    print("Accuracy on the held-out digits, clean and under attack:")
    print_table(["epsilon", *(f"{name} vs {attack}" for name, attack in columns)], rows)

    curves = [
        (f"{name} model, attacked with {attack}", results[name][attack], f"{color}o{style}")
        for color, name in zip("brg", results, strict=False)
        for attack, style in (("FGSM", "--"), ("PGD", "-"))
    ]
    xlabel, mark = "epsilon (L-inf, pixels in [0, 1])", ("training epsilon", train_epsilon)
    figure = curves_writer(
        [(title, curves)], [0, *epsilons], plot, xlabel, "test accuracy", mark, percent=True
    )
    _, *weights = output_files(plot, models)
    files = {plot: figure}
    for path, model in zip(weights, models.values(), strict=True):
        files[path] = state_dict_writer(model, path.name)
    write_all(files)  # the plot and every model, or nothing
    saved = ", ".join(path.name for path in files)
    print(f"Saved {saved} in {plot.parent}")
