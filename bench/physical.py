"""Step 16's EOT beside IBM ART's, on the distribution both can draw: rotation alone.

ART (adversarial-robustness-toolbox) has no place in this project's environment: run this
with a Python that has it, e.g. a separate venv that sees the project's packages:

    python -m venv /tmp/artvenv
    SITE=lib/python3.11/site-packages  # the project's packages, seen from the new venv:
    echo "$PWD/.venv/$SITE" > /tmp/artvenv/$SITE/project.pth
    /tmp/artvenv/bin/pip install --no-deps adversarial-robustness-toolbox six
    /tmp/artvenv/bin/python bench/physical.py [--photos imagenet_01,imagenet_04] [--threads 1]

Both attack EfficientNet-Lite0 towards the goldfish, within 8/255, with 20 PGD steps of
2/255 from a random start, each step the mean gradient over 8 rotations drawn uniformly
within 22.5 degrees either way: ours is `EOT` with a Camera that only turns (mid-grey
around the turned photo), ART's `ProjectedGradientDescentPyTorch` on a `PyTorchClassifier`
with `EoTImageRotationPyTorch` (black around it). ART's result is rounded to the 8-bit grid
inside the ball, as a PNG holds it (ours is on it already). Each example is then judged
here on 100 fresh rotations from another seed (mid-grey around), the share still
classified as the goldfish, with the wall time and the CPU time of each attack (on a
shared machine the CPU time is the fairer measure). Not part of the tests.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adversarial.plumbing.script import run  # first: before torch loads

import argparse
import time

import numpy as np
import torch
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.estimators.classification import PyTorchClassifier
from art.preprocessing.expectation_over_transformation import EoTImageRotationPyTorch

from adversarial.attacks import EOT, LinfBall
from adversarial.models import load_model
from adversarial.physical import fresh_generator, shares
from adversarial.plumbing.samples import sample_photo
from adversarial.plumbing.tables import print_table
from adversarial.transforms import Camera

GOLDFISH, EPSILON, STEPS, SAMPLES, MAX_ANGLE, SEED = 1, 8 / 255, 20, 8, 22.5, 0
TURN_ONLY = Camera(
    max_angle=MAX_ANGLE,
    scale=(1, 1),
    shift=0,
    brightness=(1, 1),
    contrast=(1, 1),
    blur=(0, 0),
    quality=None,
)


def ours(model, x, labels, steps):
    attack = EOT(model, EPSILON, TURN_ONLY, steps, SAMPLES, step_size=EPSILON / 4, seed=SEED)
    return attack(x, labels).adversarial


def arts(model, x, labels, steps):
    eot = EoTImageRotationPyTorch(nb_samples=SAMPLES, clip_values=(0, 1), angles=MAX_ANGLE)
    classifier = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=1000,
        clip_values=(0, 1),
        preprocessing_defences=[eot],
        device_type="cpu",
    )
    attack = ProjectedGradientDescentPyTorch(
        classifier,
        norm=np.inf,
        eps=EPSILON,
        eps_step=EPSILON / 4,
        max_iter=steps,
        targeted=True,
        num_random_init=1,
        batch_size=1,
        verbose=False,
    )
    y = np.eye(1000, dtype=np.float32)[labels.numpy()]
    # One photo at a time: with a batch, ART's own success count after the attack compares
    # the predictions of all the rotated copies with the labels of the batch, and fails.
    x_adversarial = [attack.generate(x[i : i + 1].numpy(), y=y[i : i + 1]) for i in range(len(x))]
    x_adversarial = torch.from_numpy(np.concatenate(x_adversarial))
    return LinfBall(x, EPSILON).saved(x_adversarial)  # what its PNG would hold


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="imagenet_01,imagenet_04,imagenet_15")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--fresh", type=int, default=100)
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)  # ART's random start draws from numpy and torch
    np.random.seed(SEED)
    model = load_model("efficientnet_lite0")
    names = args.photos.split(",")
    x = torch.cat([sample_photo(name) for name in names])
    labels = torch.full((len(x),), GOLDFISH)
    generator = fresh_generator(SEED)
    photographs = [TURN_ONLY.sample(generator) for _ in range(args.fresh)]
    print(f"{len(x)} photos ({args.photos}), goldfish, epsilon 8/255, {args.steps} steps of 2/255,")
    print(f"{SAMPLES} rotations within {MAX_ANGLE} degrees per step; {args.threads} thread(s)")
    rows = []
    for name, attack in (("this project's EOT", ours), ("ART's PGD + EoTImageRotation", arts)):
        start, cpu_start = time.perf_counter(), time.process_time()
        x_adversarial = attack(model, x, labels, args.steps)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        linf = int(((x_adversarial - x).abs().max() * 255).round())
        share = shares(model, x_adversarial, labels, photographs)
        per_photo = " ".join(f"{s:.0%}" for s in share.tolist())
        rows.append(
            [name, f"{share.mean():.0%}", per_photo, f"{linf}/255", f"{seconds:.1f}", f"{cpu:.1f}"]
        )
    print(f"Classified as goldfish under {args.fresh} fresh rotations:")
    print_table(["attack", "mean", "per photo", "L-inf", "seconds", "CPU seconds"], rows)


if __name__ == "__main__":
    run(main)
