"""What a query of the Square Attack costs, and how it compares with torchattacks' Square.

1. Square's overhead: adversarial.attacks.query.Square against the floor, a bare loop of
   forward passes (under torch.inference_mode, softmax in float64, as model_query asks),
   on the same model and batch, the model as load_model prepares it. So that every image
   is queried every time, the attack is given images it cannot fool within its budget (a
   tiny epsilon, 1/255, and 100 queries); it checks that none was fooled, and says so if
   one was. Prints the median milliseconds per query of the batch (one forward pass of
   all its images) for both, and Square's time over the floor's (the median of the ratios
   within each repeat, the two taking turns), with the part of Square's time spent
   inside the query function (the rest is its own work), beside a network that computes
   almost nothing, which leaves the attack's own bookkeeping.
2. Square beside torchattacks.Square (a benchmark-only dependency:
   requirements-bench.txt), same model, same labelled photos (those the model classifies
   right), same epsilon, same budget, untargeted: how many images each fooled, judged here
   (each returned image rounded to the 8-bit grid, checked within epsilon in 8-bit
   levels, classified by the model), the median queries of the fooled images, and the
   wall time. Queries are counted this project's way: the clean image is query 1 and the
   stripes query 2; torchattacks counts the stripes as 1 and not the clean image, so 1 is
   added to its counts, and it is given n_queries = budget - 2 squares so that both stop
   at the same count. Each attack runs once (its results do not vary with the seed fixed).
Not part of the test suite.

    python bench/query_speed.py [--repeats 7] [--batch-sizes 1,8] [--models efficientnet_lite0]
        [--queries 100] [--budget 500] [--epsilons 4/255] [--photos imagenet_00,...]
        [--skip overhead|comparison] [--threads N]
"""

import argparse
import functools
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torchattacks
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adversarial.attacks import quantize
from adversarial.attacks.query import Square, model_query
from adversarial.models import Classifier, load_model, pick_device, predict
from adversarial.plumbing import cli
from adversarial.plumbing.samples import IMAGENET_PHOTOS, sample_photo, true_class
from adversarial.plumbing.tables import print_table

SPEED_EPSILON = 1 / 255  # one 8-bit level: too small to fool these models in 100 queries
P_INIT = 0.05  # the paper's first square on ImageNet, 5% of the image
SEED = 0


def labelled_photos(model, names, device):
    """(x, labels, names) of the photos the model classifies right, labels their classes."""
    x = torch.cat([sample_photo(name) for name in names]).to(device)
    labels = torch.tensor([true_class(name) for name in names], device=device)
    right = predict(model, x).argmax(1).to(device) == labels
    return x[right], labels[right], [name for name, ok in zip(names, right, strict=True) if ok]


def cycled(x, labels, size):
    index = torch.arange(size) % len(x)
    return x[index], labels[index]


def bare_loop(model, x, labels, queries):
    """The floor: the forward passes a query attack makes, and nothing else.
    Returns (queries of the batch made, images fooled, seconds in queries): all of it."""
    with torch.inference_mode():
        for _ in range(queries):
            model(x).double().softmax(-1)
    return queries, 0, None


def square(model, x, labels, queries):
    """Square on the model's answers. Returns (queries of the batch made, images fooled,
    seconds in queries): the queries its images used, over the batch size, the number
    fooled (0 expected), and the time spent inside the query function (the rest is the
    attack's own work)."""
    query, inside = model_query(model), [0.0]

    def timed_query(images):
        started = time.perf_counter()
        probabilities = query(images)
        if probabilities.is_cuda:
            torch.cuda.synchronize()
        inside[0] += time.perf_counter() - started
        return probabilities

    result = Square(timed_query, SPEED_EPSILON, queries, P_INIT, seed=SEED)(x, labels)
    return float(result.steps.sum()) / len(x), int(result.success.sum()), inside[0]


def timed(run, x, labels, queries, device):
    """(ms per query of the batch, one forward pass of all its images; images fooled;
    ms per query spent inside the query function, None for the floor: all of it)."""
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    made, fooled, inside = run(x, labels, queries)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - started) * 1000 / made
    return elapsed, fooled, None if inside is None else inside * 1000 / made


def measure(runs, x, labels, queries, repeats, device):
    """Per run: ms per query in each repeat, the runs taking turns in rotating order; the
    ms per query inside the query function (of the last run that reports it); and the
    most images any run fooled."""
    times, inside, fooled = [[] for _ in runs], [], 0
    for run in runs:
        run(x, labels, queries)  # warm-up
    for repeat in range(repeats):
        shift = repeat % len(runs)
        for i in list(range(shift, len(runs))) + list(range(shift)):
            ms, n, in_queries = timed(runs[i], x, labels, queries, device)
            times[i].append(ms)
            fooled = max(fooled, n)
            if in_queries is not None:
                inside.append(in_queries)
    return times, inside, fooled


def tiny_network(device):
    """Almost no computation: pooling and one linear layer, with class 0 far ahead (its
    logit 20 above the others'), so that 1/255 never fools it and every query is made."""
    torch.manual_seed(SEED)
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000))
    with torch.no_grad():
        net[-1].bias[0] += 20
    return Classifier(net, (0.5,) * 3, (0.25,) * 3, "tiny").requires_grad_(False).to(device)


def overhead_table(args, device):
    titles = ("model", "batch", "floor ms/query", "square ms/query", "in queries")
    titles += ("square/floor",)
    titles += ("range", "fooled")
    rows, notes = [], []
    photos = IMAGENET_PHOTOS[:10]
    for name in (*args.models, "no network (overhead)"):
        if name.startswith("no network"):
            model = tiny_network(device)
            x_all = torch.cat([sample_photo(photo) for photo in photos]).to(device)
            labels_all = torch.zeros(len(x_all), dtype=torch.long, device=device)
        else:
            model = load_model(name, None, device)
            x_all, labels_all, _ = labelled_photos(model, photos, device)
        for size in args.batch_sizes:
            x, labels = cycled(x_all, labels_all, size)
            runs = [functools.partial(bare_loop, model), functools.partial(square, model)]
            times, inside, fooled = measure(runs, x, labels, args.queries, args.repeats, device)
            ratios = [s / f for f, s in zip(*times, strict=True)]
            cells = (name, size, *(f"{statistics.median(t):.2f}" for t in times))
            cells += (f"{statistics.median(inside):.2f}",)
            if name.startswith("no network"):  # a ratio over almost nothing says nothing
                cells += ("", "")
            else:
                cells += (
                    f"{statistics.median(ratios):.3f}",
                    f"{min(ratios):.2f}-{max(ratios):.2f}",
                )
            rows.append((*cells, f"{fooled}/{size}"))
            if fooled:
                notes.append(
                    f"# NOTE {name}, batch {size}: {fooled} image(s) fooled at "
                    f"{SPEED_EPSILON * 255:.3g}/255: fewer images queried in later queries"
                )
    print_table(titles, rows)
    for note in notes:
        print(note)


def judge(model, x, adversarial, labels, epsilon):
    """Fooled as the PNG would be: rounded to 8 bits, within epsilon in 8-bit levels, and
    classified as anything but the label. Returns (fooled, largest change in levels)."""
    saved = quantize(adversarial.clone())
    levels = (saved * 255).round() - (x * 255).round()
    change = levels.abs().flatten(1).amax(1)
    within = change <= math.floor(epsilon * 255 + 1e-6)
    fooled = predict(model, saved).argmax(1).to(x.device) != labels
    return fooled & within, change


def ours(model, x, labels, epsilon, budget):
    """This project's Square: (adversarial, queries per image, image forwards made, its
    own success claim)."""
    result = Square(model_query(model), epsilon, budget, P_INIT, seed=SEED)(x, labels)
    return result.adversarial, result.steps, int(result.steps.sum()), result.success


def theirs(model, x, labels, epsilon, budget):
    """torchattacks' Square, its single run (what perturb calls, minus the clean forward
    before and the check after), which alone returns queries per image. Its claim is left
    to the caller (None), outside the time."""
    attack = torchattacks.Square(
        model,
        norm="Linf",
        eps=epsilon,
        n_queries=budget - 2,  # its n_queries squares after the stripes, not counting x
        n_restarts=1,
        p_init=P_INIT,
        loss="margin",
        resc_schedule=True,
        seed=SEED,
    )
    attack.init_hyperparam(x)
    torch.random.manual_seed(SEED)  # as its perturb seeds before the run
    counts, adversarial = attack.attack_single_run(x, labels)
    # + 1: the clean image, query 1 as ours counts (its counts start at the stripes)
    return adversarial, counts.long() + 1, int(counts.sum()), None


def comparison_table(args, device):
    titles = ("model", "epsilon", "attack", "fooled", "its claim", "median queries")
    titles += ("max levels", "wall s", "ms/image-query")
    rows, per_photo = [], []
    for name in args.models:
        model = load_model(name, None, device)
        x, labels, names = labelled_photos(model, args.photos, device)
        for epsilon in args.epsilons:
            counts = {}
            for attack_name, attack in (("project", ours), ("torchattacks", theirs)):
                started = time.perf_counter()
                adversarial, queries, forwards, claimed = attack(
                    model, x, labels, epsilon, args.budget
                )
                if device == "cuda":
                    torch.cuda.synchronize()
                wall = time.perf_counter() - started
                if claimed is None:  # torchattacks': its unrounded image misclassified
                    claimed = predict(model, adversarial).argmax(1).to(device) != labels
                fooled, change = judge(model, x, adversarial, labels, epsilon)
                median = statistics.median(queries[fooled].tolist()) if fooled.any() else "-"
                rows.append(
                    (
                        name,
                        f"{epsilon * 255:.3g}/255",
                        attack_name,
                        f"{int(fooled.sum())}/{len(x)}",
                        f"{int(claimed.sum())}/{len(x)}",
                        median,
                        int(change.max()),
                        f"{wall:.1f}",
                        f"{wall * 1000 / forwards:.1f}",
                    )
                )
                counts[attack_name] = [
                    str(int(q)) if f else f"not ({int(q)})"
                    for q, f in zip(queries, fooled, strict=True)
                ]
            for photo, mine, other in zip(names, *counts.values(), strict=True):
                per_photo.append((name, f"{epsilon * 255:.3g}/255", photo, mine, other))
    print_table(titles, rows)
    print("\n# queries per photo (fooled after; not: the budget ran out):")
    print_table(("model", "epsilon", "photo", "project", "torchattacks"), per_photo)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument(
        "--models", type=cli.list_of(str, keep_order=True), default=("efficientnet_lite0",)
    )
    parser.add_argument("--queries", type=int, default=100, help="the overhead runs' budget")
    parser.add_argument("--budget", type=int, default=500, help="the comparison's budget")
    parser.add_argument("--epsilons", type=cli.list_of(cli.pixel_amount), default=(4 / 255,))
    parser.add_argument(
        "--photos",
        type=cli.list_of(cli.one_of(IMAGENET_PHOTOS), keep_order=True),
        default=IMAGENET_PHOTOS[:10],
    )
    parser.add_argument("--skip", choices=["overhead", "comparison"])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, help="torch's threads (default: its own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    device = pick_device(args.device)

    where = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "CPU"
    print(
        f"# {where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"torchattacks {torchattacks.__version__}; Square, p_init {P_INIT}, seed {SEED}"
    )
    if args.skip != "overhead":
        print(
            f"# 1. ms per query of the batch (one forward pass of all its images), median of "
            f"{args.repeats}; epsilon {SPEED_EPSILON * 255:.3g}/255, {args.queries} queries,"
            " labelled photos the model classifies right, cycled to the batch size.\n"
            "# floor: the bare forward loop; in queries: of square's time, that inside the"
            " query function (the rest is its own work);\n"
            "# square/floor: median of the ratios within each repeat (range: lowest-highest);"
            " fooled: should be 0"
        )
        overhead_table(args, device)
    if args.skip != "comparison":
        print(
            f"\n# 2. this project's Square beside torchattacks' Square, untargeted, budget "
            f"{args.budget} queries, photos {args.photos[0]}..{args.photos[-1]} that the model"
            " classifies right.\n"
            "# queries counted this project's way: clean image 1, stripes 2 (torchattacks'"
            " counts + 1; it is given n_queries = budget - 2).\n"
            "# fooled: judged here on the 8-bit image within epsilon; its claim: what the"
            " attack itself counts as fooled (torchattacks: on its unrounded image);\n"
            "# median queries: of the images judged fooled; max levels: largest change in"
            " 8-bit levels; ms/image-query: wall time over the images' forward passes made.\n"
            "# torchattacks draws one square (place and colour) for the whole batch per"
            " query, this project one per image."
        )
        comparison_table(args, device)


if __name__ == "__main__":
    main()
