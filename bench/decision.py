"""HopSkipJump, this project's, beside foolbox's HopSkipJumpAttack and ART's HopSkipJump.

On step 7's standard digits model (or --weights), on the first --count held-out digits of
step 7's split (seed 0) that the model classifies right, untargeted, L2, from the same
start for all three: for each digit, the first uniform noise image (drawn here, seeded)
that the model misclassifies. Every library is given the model wrapped in a counter, so
its queries are counted the same way: one per image in each forward pass, whatever the
library itself reports (foolbox counts none; ART counts iterations, and asks the model
once more per image to check its start and once for its result; both are included).

foolbox's and ART's budgets are iterations, not queries: each runs once per --iterations
value, and is set beside ours at the same number of queries (per digit, read from our
trace: the best saved image within that many queries). Their results are floats: each is
judged here as floats and once rounded to the 8-bit grid (as a PNG holds it); ours are on
the grid already. Then queries per second: ours against a bare loop of forward passes of
the very batch sizes it asked (recorded by the counter), on the same model (the median of
three timings of the bare loop).

foolbox and ART are not in the project's environment; install them beside it, e.g. in a
separate venv that sees the project's packages (a .pth file), and run this with that
Python. Not part of the test suite.

    python bench/decision.py [--weights outputs/digits_standard.pth] [--count 20]
        [--queries 3000] [--iterations 2,5,10] [--threads 1]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adversarial.plumbing.script import run  # first: before torch loads

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from adversarial import digits
from adversarial.attacks import quantize
from adversarial.attacks.decision import HopSkipJump, distance_after, model_decision
from adversarial.attacks.minimal import fools
from adversarial.plumbing.tables import print_table


class Counted(nn.Module):
    """The model, counting every image it is asked about and keeping each batch's size."""

    def __init__(self, model):
        super().__init__()
        self.model, self.images, self.batches = model, 0, []

    def forward(self, x):
        self.images += len(x)
        self.batches.append(len(x))
        return self.model(x.float())  # ART computes some probes in float64


def noise_starts(model, x, y, seed):
    """Per digit, the first uniform noise image on the grid that the model misclassifies."""
    generator = torch.Generator().manual_seed(seed)
    starts = []
    for image, label in zip(x, y, strict=True):
        while True:
            noise = torch.randint(0, 256, image.shape, generator=generator) / 255
            if model(noise[None]).argmax(1)[0] != label:
                starts.append(noise)
                break
    return torch.stack(starts)


def judged(model, x, y, adversarial):
    """(median L2 over those that fool as floats, share fooling once rounded, median L2 of
    the rounded ones that fool)."""
    adversarial = torch.as_tensor(adversarial, dtype=torch.float32)
    l2 = (adversarial - x).flatten(1).norm(dim=1)
    fooled = fools(model, adversarial, y, False)
    rounded = quantize(adversarial.clamp(0, 1))
    rounded_fooled = fools(model, rounded, y, False)
    rounded_l2 = (rounded - x).flatten(1).norm(dim=1)
    return (
        statistics.median(l2[fooled].tolist()) if fooled.any() else float("nan"),
        rounded_fooled.float().mean().item(),
        statistics.median(rounded_l2[rounded_fooled].tolist())
        if rounded_fooled.any()
        else float("nan"),
    )


def ours(model, x, y, starts, queries):
    counted = Counted(model)
    start = time.perf_counter()
    result = HopSkipJump(model_decision(counted), queries, batch=1000)(x, y, starts)
    seconds = time.perf_counter() - start
    assert counted.images == int(result.queries.sum()), "queries miscounted"
    return result, seconds, counted.batches


def run_foolbox(model, x, y, starts, steps):
    import foolbox

    counted = Counted(model)
    fmodel = foolbox.PyTorchModel(counted.eval(), bounds=(0, 1))
    attack = foolbox.attacks.HopSkipJumpAttack(steps=steps, constraint="l2")
    start = time.perf_counter()
    adversarial = attack.run(
        fmodel, x, foolbox.criteria.Misclassification(y), starting_points=starts
    )
    return adversarial, time.perf_counter() - start, counted.images / len(x)


def run_art(model, x, y, starts, iterations):
    from art.attacks.evasion import HopSkipJump as ArtHopSkipJump
    from art.estimators.classification import PyTorchClassifier

    counted = Counted(model)
    classifier = PyTorchClassifier(
        counted,
        nn.CrossEntropyLoss(),
        tuple(x.shape[1:]),
        10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    attack = ArtHopSkipJump(
        classifier, norm=2, max_iter=iterations, max_eval=10_000, init_eval=100, verbose=False
    )
    start = time.perf_counter()
    labels = np.eye(10, dtype=np.float32)[y.numpy()]
    adversarial = attack.generate(x.numpy(), y=labels, x_adv_init=starts.numpy())
    return adversarial, time.perf_counter() - start, counted.images / len(x)


def bare_loop(model, batches, shape):
    """Seconds for forward passes of these batch sizes, nothing else."""
    x = torch.rand(max(batches), *shape)
    with torch.inference_mode():
        start = time.perf_counter()
        for size in batches:
            model(x[:size]).argmax(1)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, default=Path("outputs/digits_standard.pth"))
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--iterations", default="2,5,10")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = digits.load_trained(args.weights).eval()
    _, _, x_test, y_test = digits.load_data(0)
    x, y = x_test[: args.count], y_test[: args.count]
    right = model(x).argmax(1) == y
    x, y = x[right], y[right]
    starts = noise_starts(model, x, y, args.seed)
    machine = platform.processor() or platform.machine()
    print(f"{machine}, torch {torch.__version__}, {args.threads} thread(s)")
    print(
        f"{args.weights.name}: {len(x)} of the first {args.count} held-out digits classified right"
    )

    result, seconds, batches = ours(model, x, y, starts, args.queries)
    floor = statistics.median(bare_loop(model, batches, x.shape[1:]) for _ in range(3))
    total = int(result.queries.sum())
    print(
        f"ours: {args.queries} queries per digit, {seconds:.2f} s, {total / seconds:.0f} queries/s;"
    )
    print(f"the same forward passes, bare: {total / floor:.0f} queries/s ({seconds / floor:.2f}x)")

    header = ["attack", "iterations", "queries/digit", "L2 floats", "PNG fools", "L2 PNG"]
    rows = []
    runners = {"foolbox": run_foolbox, "ART": run_art}
    for name, runner in runners.items():
        for iterations in map(int, args.iterations.split(",")):
            adversarial, took, per_digit = runner(model, x, y, starts, iterations)
            l2, share, l2_png = judged(model, x, y, adversarial)
            budget = round(per_digit)
            mine = statistics.median(distance_after(t, budget) for t in result.trace)
            mine_cell = f"{mine:.3f}" if budget <= args.queries else "-"
            rate = per_digit * len(x) / took
            theirs = [f"{per_digit:.0f}", f"{l2:.3f}", f"{share:.0%}", f"{l2_png:.3f}"]
            rows.append([name, iterations, *theirs, mine_cell, f"{took:.2f}", f"{rate:.0f}"])
    print_table([*header, "ours, same queries", "seconds", "queries/s"], rows)
    print("(medians over the digits; ours: the best saved image within as many queries)")


if __name__ == "__main__":
    run(main)
