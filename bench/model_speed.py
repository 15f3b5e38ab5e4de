"""What each offline model costs and how often it is right: size, forward time, accuracy.

For every model at hand without a download (the EfficientNet-Lites 0 to 2, SqueezeNet
1.1, and ResNet18 when models_at_hand lists it):
- its parameters as built (the published figure) and as load_model prepares it (BatchNorm
  folded into the convolutions, so fewer), and the prepared weights' size in float32 (MB,
  10^6 bytes);
- the median forward time in ms on the CPU, 224x224 input, under torch.inference_mode, at
  each batch size, on the model as load_model prepares it: each repeat times --passes
  forwards (their mean), the models taking turns in rotating order within each repeat;
- its top-1 and top-5 accuracy on the 20 labelled ImageNet photos, beside the table in
  docs/step_2_pretrained.md (a mismatch is printed as such).
Not part of the test suite.

    python bench/model_speed.py [--repeats 7] [--passes 5] [--batch-sizes 1,8] [--threads N]
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adversarial.models import load_model, models_at_hand, predict
from adversarial.plumbing.samples import IMAGENET_PHOTOS, sample_photo, true_class
from adversarial.plumbing.tables import print_table

# docs/step_2_pretrained.md's table: model -> (top-1, top-5) of the 20 labelled photos.
DOCUMENTED = {
    "efficientnet_lite0": (17, 20),
    "efficientnet_lite1": (18, 20),
    "efficientnet_lite2": (18, 20),
    "squeezenet1_1": (11, 19),
}


def parameters(model):
    return sum(p.numel() for p in model.parameters())


def float32_mb(model):
    return sum(p.numel() for p in model.parameters()) * 4 / 1e6


def timed(model, x, passes):
    """Milliseconds per forward pass, the mean of `passes` of them."""
    with torch.inference_mode():
        started = time.perf_counter()
        for _ in range(passes):
            model(x)
    return (time.perf_counter() - started) * 1000 / passes


def forward_times(models, x, repeats, passes):
    """Per model: ms per forward in each repeat, the models taking turns in rotating order
    so that a slow moment of the machine is shared among them."""
    times = [[] for _ in models]
    for model in models:
        timed(model, x, 1)  # warm-up
    for repeat in range(repeats):
        shift = repeat % len(models)
        for i in list(range(shift, len(models))) + list(range(shift)):
            times[i].append(timed(models[i], x, passes))
    return times


def accuracy(model, x, labels):
    """(top-1, top-5): how many photos have their true class first, and in the top 5."""
    top5 = predict(model, x).topk(5).indices
    return int((top5[:, 0] == labels).sum()), int((top5 == labels[:, None]).any(1).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--passes", type=int, default=5, help="forward passes per repeat")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--threads", type=int, help="torch's threads (default: its own)")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)

    names = models_at_hand()
    print(
        f"# {platform.processor() or 'CPU'}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; CPU, 224x224, median of {args.repeats} repeats of "
        f"{args.passes} forward passes"
    )
    models = [load_model(name, None, "cpu") for name in names]
    built = [load_model(name, None, "cpu", prepare_for_speed=False) for name in names]

    photos = torch.cat([sample_photo(name) for name in IMAGENET_PHOTOS])
    labels = torch.tensor([true_class(name) for name in IMAGENET_PHOTOS])
    times = {}
    for size in batch_sizes:
        x = photos[torch.arange(size) % len(photos)]
        times[size] = forward_times(models, x, args.repeats, args.passes)

    titles = ("model", "parameters as built", "prepared", "MB float32")
    titles += tuple(f"ms batch {size}" for size in batch_sizes)
    rows = []
    for i, (name, model, unprepared) in enumerate(zip(names, models, built, strict=True)):
        cells = (name, parameters(unprepared), parameters(model))
        cells += (f"{float32_mb(model):.1f}",)
        cells += tuple(f"{statistics.median(times[size][i]):.1f}" for size in batch_sizes)
        rows.append(cells)
    print_table(titles, rows)

    print(f"\n# accuracy on the {len(photos)} labelled photos (docs: docs/step_2_pretrained.md)")
    rows, mismatches = [], []
    for name, model in zip(names, models, strict=True):
        top1, top5 = accuracy(model, photos, labels)
        documented = DOCUMENTED.get(name)
        if documented is None:
            agrees = "not in docs"
        elif documented == (top1, top5):
            agrees = "yes"
        else:
            agrees = f"NO: docs say {documented[0]} and {documented[1]}"
            mismatches.append(name)
        rows.append((name, top1, top5, agrees))
    count = len(photos)
    print_table(("model", f"top-1 of {count}", f"top-5 of {count}", "agrees with docs"), rows)
    if mismatches:
        print(f"# MISMATCH with docs/step_2_pretrained.md: {', '.join(mismatches)}")


if __name__ == "__main__":
    main()
