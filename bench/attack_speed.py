"""What one attack step costs: the floor, this project's PGD, and torchattacks' PGD.

Same weights, input batch, epsilon, step size and number of steps for all of them:
- floor: a bare PyTorch loop, forward + gradient with respect to the input only;
- project: adversarial.attacks.PGD, the code step 5 runs, with early stopping off;
- torchattacks: torchattacks.PGD (a benchmark-only dependency: requirements-bench.txt);
the three on the model as load_model prepares it (BatchNorm folded, channels-last on
the CPU), which isolates the attack loops; and torchattacks once more on the network
as torchvision builds it, which is how it is usually run.
Prints the median milliseconds per step over repeats, the project's time over each
other's (the median of the ratios within each repeat), and the peak memory each adds.
Then, with early stopping on, how many steps step 5's default attack needs to turn the
test photos into goldfish. Not part of the test suite.

    python bench/attack_speed.py [--steps 20] [--repeats 7] [--batch-sizes 1,8]
"""

import argparse
import functools
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchattacks
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adversarial.attacks import PGD, TutorialSGD
from adversarial.models import Classifier, load_model, pick_device
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.samples import sample_photo
from adversarial.plumbing.tables import print_table

GOLDFISH = 1
EPSILON, STEP_SIZE = 2 / 255, 0.5 / 255
SAMPLES = ("coffee", "chelsea", "astronaut", "rocket")


def sample_photos():
    """name -> crop: the scikit-image samples, and the tutorial's corgi when present."""
    photos = {name: sample_photo(name)[0] for name in SAMPLES}
    corgi = Path(__file__).resolve().parents[2] / "shared" / "tutorial" / "corgi.png"
    if corgi.exists():
        photos["corgi"] = load_image_tensor(corgi)[0]
    return photos


def sample_batch(size):
    photos = list(sample_photos().values())
    return torch.stack([photos[i % len(photos)] for i in range(size)])


def floor(model, x, labels, steps):
    """The least an L-inf attack must do per step: forward, input gradient, signed update."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() - STEP_SIZE * grad.sign()).clamp(-EPSILON, EPSILON)
        delta = (x + delta).clamp(0, 1) - x


def project(model, x, labels, steps):
    PGD(model, EPSILON, steps, step_size=STEP_SIZE, early_stop=False)(x, labels)


def reference(model, x, labels, steps):
    attack = torchattacks.PGD(model, eps=EPSILON, alpha=STEP_SIZE, steps=steps)
    attack.set_mode_targeted_by_label(quiet=True)
    attack(x, labels)


def peak_memory_reset(device):
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as refs:  # Linux: resets the peak RSS (VmHWM)
        refs.write("5")
    return _status_kb("VmRSS") * 1024


def peak_memory(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return _status_kb("VmHWM") * 1024


def _status_kb(field):
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1])


def timed(attack, x, labels, steps, device):
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    attack(x, labels, steps)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) * 1000 / steps


def measure(attacks, x, labels, steps, repeats, device):
    """Per attack (a method bound to its model): ms per step in each repeat, peak MiB added.

    The attacks take turns within each repeat, in rotating order, so that a slow moment
    of the machine is shared among them instead of landing on one.
    """
    times = [[] for _ in attacks]
    for attack in attacks:
        attack(x, labels, steps)  # warm-up
    for repeat in range(repeats):
        shift = repeat % len(attacks)
        for i in list(range(shift, len(attacks))) + list(range(shift)):
            times[i].append(timed(attacks[i], x, labels, steps, device))
    memory = []
    for attack in attacks:
        baseline = peak_memory_reset(device)
        attack(x, labels, steps)
        memory.append((peak_memory(device) - baseline) / 2**20)
    return times, memory


def paired_ratio(times, others):
    """Median over repeats of the ratio within each repeat, where the two ran seconds
    apart: steadier than a ratio of medians when the machine's speed drifts."""
    return statistics.median(t / o for t, o in zip(times, others, strict=True))


def models(device, folder):
    """(name, model as load_model prepares it, the network as built, unprepared):
    ResNet18 with seeded random weights (the mechanics), EfficientNet-Lite0, and a
    stand-in with almost no computation, which isolates the attack loops' own cost."""
    torch.manual_seed(0)
    weights = Path(folder) / "resnet18_random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    for name, label, weights_file in (
        ("resnet18", "resnet18 (random)", weights),
        ("efficientnet_lite0", "efficientnet_lite0", None),
    ):
        yield (
            label,
            load_model(name, weights_file, device),
            load_model(name, weights_file, device, prepare_for_speed=False),
        )
    # Almost no network: what is left is each method's own per-step bookkeeping.
    tiny = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000))
    tiny = Classifier(tiny, (0.5,) * 3, (0.25,) * 3, "tiny").to(device)
    yield "no network (overhead)", tiny, tiny


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    where = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "CPU"
    print(
        f"# {where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"torchattacks {torchattacks.__version__}; {args.steps} steps, median of {args.repeats}"
    )
    print(
        "# ms per step. floor, project, torchattacks: the model as load_model prepares it;"
        " as built: torchattacks on the network as torchvision builds it.\n"
        "# peak MiB added: floor / project / torchattacks / as built"
    )
    titles = ("model", "batch", "floor", "project", "torchattacks", "as built")
    titles += ("project/floor", "project/torchattacks", "project/as built", "peak MiB")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, model, unprepared in models(device, folder):
            for size in batch_sizes:
                x = sample_batch(size).to(device)
                labels = torch.full((size,), GOLDFISH, device=device)
                attacks = [
                    functools.partial(floor, model),
                    functools.partial(project, model),
                    functools.partial(reference, model),
                    functools.partial(reference, unprepared),
                ]
                times, mib = measure(attacks, x, labels, args.steps, args.repeats, device)
                cells = (name, size, *(f"{statistics.median(t):.1f}" for t in times))
                cells += tuple(f"{paired_ratio(times[1], t):.2f}" for t in times[:1] + times[2:])
                cells += (" / ".join(f"{max(m, 0):.0f}" for m in mib),)
                rows.append(cells)
    print_table(titles, rows)

    print("\n# step 5's default attack (tutorial SGD, 2/255, budget 30), early stopping on:")
    model = load_model("efficientnet_lite0", None, device)
    photos = sample_photos()
    x = torch.stack(list(photos.values())).to(device)
    result = TutorialSGD(model, EPSILON, 30)(x, torch.full((len(x),), GOLDFISH, device=device))
    for name, success, steps in zip(photos, result.success, result.steps, strict=True):
        outcome = "goldfish after" if success else "NOT goldfish within"
        print(f"{name:<10} {outcome} {int(steps)} steps")


if __name__ == "__main__":
    main()
