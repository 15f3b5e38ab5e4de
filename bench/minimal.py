"""Minimal perturbations: this project's DeepFool and Carlini-Wagner L2 beside torchattacks'.

On step 7's standard digits model (or --weights), on the 360 held-out digits of step 7's
split (seed 0), untargeted, in one batch: the digits the model classifies right (how many
it gets wrong is printed; torchattacks' DeepFool would return them unchanged).
- DeepFool, L2, 50 steps, overshoot 0.02: ours with candidates=9 (every other class, as
  torchattacks) on floats (grid=False), beside torchattacks.DeepFool;
- CW-L2, kappa 0, 100 Adam steps of lr 0.01: torchattacks.CW(c=1), which has no search
  over c, beside our CarliniWagnerL2 with one search at c = 1, and with its defaults
  (5 searches of 100 steps from c = 0.01).
Every output is judged here with `fools`, never by the attack's own flag: as floats, and
once rounded to the 8-bit grid, as a PNG holds it; the median L2 (`sizes`) over the
digits each fooled, and over those every implementation of that attack fooled; and the
batch's wall time, after a warm-up run of each on 8 digits. Not part of the test suite.

    python bench/minimal.py [--weights outputs/digits_standard.pth] [--threads 1]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adversarial.plumbing.script import run  # first: before torch loads

import argparse
import platform
import statistics
import time

import torch
import torchattacks

from adversarial import digits
from adversarial.attacks import quantize
from adversarial.attacks.minimal import CarliniWagnerL2, DeepFool, fools, sizes
from adversarial.plumbing.tables import print_table

SEED = 0  # step 7's split
DEEPFOOL_STEPS, OVERSHOOT = 50, 0.02
CW_STEPS, CW_LR, CW_C = 100, 0.01, 1.0


def attacks(model):
    """[(attack, implementation, images, labels -> adversarial images)]."""

    def ours(attack):
        return lambda x, y: attack(x, y).adversarial

    deepfool = DeepFool(model, steps=DEEPFOOL_STEPS, overshoot=OVERSHOOT, candidates=9)
    their_cw = torchattacks.CW(model, c=CW_C, kappa=0, steps=CW_STEPS, lr=CW_LR)
    one_c = CarliniWagnerL2(model, searches=1, steps=CW_STEPS, lr=CW_LR, initial_c=CW_C)
    return [
        ("DeepFool", "project", ours(deepfool)),
        ("DeepFool", "torchattacks", torchattacks.DeepFool(model, DEEPFOOL_STEPS, OVERSHOOT)),
        ("CW-L2", "project, c=1", ours(one_c)),
        ("CW-L2", "torchattacks, c=1", their_cw),
        ("CW-L2", "project, 5 searches from c=0.01", ours(CarliniWagnerL2(model))),
    ]


def median(values):
    return f"{statistics.median(values.tolist()):.3f}" if len(values) else "-"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        type=Path,
        default=Path("outputs/digits_standard.pth"),
        help="a digits weights file, as step 7 saves it (default: its standard model)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = digits.load_trained(args.weights).eval()
    _, _, x_test, y_test = digits.load_data(SEED)
    right = ~fools(model, x_test, y_test, targeted=False)
    x, y = x_test[right], y_test[right]

    where = platform.processor() or "CPU"
    print(
        f"# {where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"torchattacks {torchattacks.__version__}; {args.weights}"
    )
    print(
        f"# {len(x_test)} held-out digits (seed {SEED}); {int((~right).sum())} already "
        f"misclassified, left out of every attack: {len(x)} attacked, in one batch"
    )
    for _, _, function in attacks(model):  # warm-up: the first runs pay for allocations
        function(x[:8], y[:8])
    results = []  # (attack, implementation, fooled, fooled once rounded, l2, l2 rounded, s)
    for attack, implementation, function in attacks(model):
        torch.manual_seed(SEED)
        started = time.perf_counter()
        adversarial = function(x, y).detach()
        seconds = time.perf_counter() - started
        saved = quantize(adversarial.clone())
        fooled, fooled_saved = (fools(model, a, y, targeted=False) for a in (adversarial, saved))
        l2, l2_saved = sizes(x, adversarial).l2, sizes(x, saved).l2
        results.append((attack, implementation, fooled, fooled_saved, l2, l2_saved, seconds))

    rows = []
    for attack, implementation, fooled, fooled_saved, l2, l2_saved, seconds in results:
        every = torch.stack([r[2] for r in results if r[0] == attack]).all(0)
        rows.append(
            [
                attack,
                implementation,
                len(x),
                f"{fooled.float().mean():.1%}",
                median(l2[fooled]),
                f"{fooled_saved.float().mean():.1%}",
                median(l2_saved[fooled_saved]),
                f"{median(l2[every])} ({int(every.sum())})",
                f"{seconds:.1f}",
            ]
        )
    titles = ("attack", "implementation", "images", "fooled", "median L2")
    titles += ("fooled once rounded", "median L2 rounded", "median L2, all fooled (n)", "wall s")
    print_table(titles, rows)
    print(
        "# median L2: of the change, over the digits that implementation fooled (rounded: "
        "of the 8-bit image, over those it fools);\n# all fooled: over the digits every "
        "implementation of that attack fooled as floats (how many in brackets)"
    )


if __name__ == "__main__":
    run(main)
