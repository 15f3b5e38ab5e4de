"""Step 17's bounds beside the LP relaxation, and the MILP's time against its unstable ReLUs.

auto_LiRPA (the reference IBP and CROWN) does not run here: its only release on PyPI, 0.3,
requires torch < 1.13 and imports torch.onnx internals that the pinned torch 2.x no longer
has (tried in a separate virtual environment, never the project's). So the bounds are set
beside the tightest bound a single-neuron relaxation can give, the LP relaxation (each
ReLU in its triangle; the MILP with its integers relaxed, solved by SciPy's HiGHS), and
beside the margin at PGD's image. Per margin logit[label] - logit[j]:
    IBP, CROWN <= LP <= the exact smallest margin <= the margin at PGD's image
(CROWN is one feasible answer of the LP's dual, with intermediate bounds no tighter; the
exact smallest margin itself takes the MILP minutes per margin here, so it is left out.)

1. The three networks of step 17's default run (same seed, epochs, hidden sizes, epsilon
   0.1), on the first --digits-count held-out digits: the mean of each method's margins, how
   often CROWN is above IBP, and the order checked margin by margin.
2. MILP time against unstable ReLUs: standard and IBP-trained networks of growing width,
   step 17's MILP (`verify.exact`) with big-M from IBP alone and from the tighter of IBP
   and CROWN, on the same digits. Wall times on this machine, not part of the tests.

    python bench/verify.py [--digits-count 10] [--widths 16,32,64] [--time-limit 30]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adversarial.plumbing.script import run  # first: before torch loads

import argparse
import time

import torch

from adversarial import digits, three_answers, verify
from adversarial.attacks import PGD
from adversarial.plumbing.tables import print_table

SEED, EPSILON, EPOCHS = 0, 0.1, 20  # step 17's defaults


def compare_bounds(models, x, y):
    print(f"Lower bounds of the 9 margins of each of the first {len(y)} held-out digits at")
    print(f"epsilon {EPSILON:g}, mean over the margins; PGD's: the margin at its image, above")
    print("the exact smallest margin, which lies between LP's and PGD's:")
    rows = []
    for name, model in models.items():
        pgd = PGD(model, EPSILON, steps=50, targeted=False, seed=SEED)(x, y).adversarial
        with torch.no_grad():
            layers, _ = verify.affine_layers(model, y)
            lower, upper = verify.ball_box(x, EPSILON)
            h = pgd.flatten(1)
            for i, (W, b) in enumerate(layers):
                h = verify.apply(W, h.clamp(min=0) if i else h) + b
            ibp = verify.interval_bounds(layers, lower, upper)[-1][0]
            crown = verify.crown_bounds(layers, lower, upper)[-1][0]
        start, lp = time.perf_counter(), []
        for xi, yi in zip(x, y, strict=True):
            program = verify.encode(model, xi, int(yi), EPSILON)
            lp += [verify.smallest_margin(program, j, relax=True) for j in range(9)]
        seconds = time.perf_counter() - start
        lp = torch.tensor(lp).view(-1, 9)
        ordered = (crown <= lp + 1e-5).all() & (ibp <= lp + 1e-5).all() & (lp <= h + 1e-5).all()
        figures = [f"{v.mean().item():.2f}" for v in (ibp, crown, lp, h)]
        tighter = f"{(crown > ibp).float().mean().item():.0%}"
        name = three_answers.MODELS[name]
        rows.append([name, *figures, tighter, "yes" if ordered else "NO", f"{seconds:.1f}"])
    header = ["model", "IBP", "CROWN", "LP", "PGD's", "CROWN above IBP", "ordered", "LP s"]
    print_table(header, rows)


def milp_growth(x_train, y_train, x, y, widths, time_limit):
    print(f"\nMILP time against unstable ReLUs, two hidden layers, epsilon {EPSILON:g},")
    print(f"the first {len(y)} held-out digits (seconds per digit, limit {time_limit:g} s):")
    rows = []
    for width in widths:
        hidden, names = (width, width), ("standard", "ibp")
        models = three_answers.train_all(x_train, y_train, EPSILON, EPOCHS, hidden, SEED, names)
        for name in ("standard", "ibp"):
            for label, bounds in (("IBP", verify.interval_bounds), ("IBP and CROWN", None)):
                unstable = verify.unstable_relus(models[name], x, EPSILON, bounds).float()
                answers = [
                    verify.exact(models[name], xi, int(yi), EPSILON, time_limit, bounds)
                    for xi, yi in zip(x, y, strict=True)
                ]
                times = torch.tensor([a.seconds for a in answers])
                timeouts = sum(a.verdict == "timeout" for a in answers)
                mean, slowest = times.mean().item(), times.max().item()
                figures = [f"{unstable.mean().item():.1f}", f"{mean:.2f}", f"{slowest:.2f}"]
                rows.append(
                    [f"{width},{width}", three_answers.MODELS[name], label, *figures, timeouts]
                )
    header = ["hidden", "model", "big-M from", "unstable ReLUs", "MILP s mean", "max"]
    print_table([*header, "timeouts"], rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--digits-count", type=int, default=10)
    parser.add_argument("--widths", default="16,32,64")
    parser.add_argument("--time-limit", type=float, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = digits.load_data(SEED)
    x, y = x_test[: args.digits_count], y_test[: args.digits_count]
    models = three_answers.train_all(x_train, y_train, EPSILON, EPOCHS, (32, 32), SEED)
    compare_bounds(models, x, y)
    widths = [int(w) for w in args.widths.split(",")]
    milp_growth(x_train, y_train, x, y, widths, args.time_limit)


if __name__ == "__main__":
    run(main)
