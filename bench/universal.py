"""Step 15 beside IBM ART: its UniversalPerturbation and AdversarialPatchPyTorch.

ART is not in the project's environment: run this with a Python that has both the project's
packages and `adversarial-robustness-toolbox` (1.20 was used), e.g. a separate venv that
sees the project's site-packages through a .pth file:

    python bench/universal.py [--weights outputs/digits_standard.pth] [--patch-steps 150]
                              [--part universal|patch]

- Universal perturbations, on step 7's standard digits model (or --weights): fitted on the
  training digits of step 7's split (seed 0), L-inf xi = 0.2, at most 3 passes, delta 0.2
  (stop at 80% fooled), DeepFool as the attacker on both sides; judged here, on the
  held-out digits the model gets right (the share whose class changes), with v rounded to
  the 8-bit grid within xi as step 15 saves it; wall time of each fit.
- The patch, on EfficientNet-Lite0: a 71 x 71 square (10% of the image) towards toaster,
  fitted on step 15's 10 fitting photos for the same number of Adam steps (lr 0.05), the
  same rotations (22.5 degrees) and scales (0.8 to 1 of 71 pixels), and the same gradient
  evaluations: each step, two placements of each photo (ours pastes each photo twice; ART
  gets each photo twice in one batch of 20); judged here with step 15's own
  measurement: pasted whole-pixel at the same 3 random placements on each of the 16
  held-out and sample photos, the share classified as toaster. Not part of the test suite.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adversarial.plumbing.script import run  # first: before torch loads

import argparse
import time

import numpy as np
import torch

from adversarial import digits, universal
from adversarial.attacks.universal import (
    AdversarialPatch,
    UniversalPerturbation,
    classes,
    on_grid,
)
from adversarial.models import load_model
from adversarial.plumbing.tables import print_table
from adversarial.transforms import patch_side

XI, PASSES, DELTA = 0.2, 3, 0.2
SHARE, TOASTER, LR, PLACEMENTS = 0.1, 859, 0.05, 3


def art_classifier(model, shape, classes_count):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=classes_count,
        clip_values=(0.0, 1.0),
    )


def held_out_rate(model, x, y, v):
    right = classes(model, x) == y
    return (classes(model, (x[right] + v).clamp(0, 1)) != y[right]).float().mean().item()


def compare_universal(weights):
    from art.attacks.evasion import UniversalPerturbation as ArtUniversal

    model = digits.load_trained(weights)
    x_train, _, x_test, y_test = digits.load_data(0)
    rows = []
    start = time.perf_counter()
    ours = UniversalPerturbation(model, XI, delta=DELTA, passes=PASSES)(x_train)
    seconds = time.perf_counter() - start
    rows.append(
        ["project", f"{held_out_rate(model, x_test, y_test, ours.v):.1%}", f"{seconds:.1f}"]
    )
    art = ArtUniversal(
        art_classifier(model, (1, 8, 8), 10),
        attacker="deepfool",
        attacker_params={"verbose": False},
        delta=DELTA,
        max_iter=PASSES,
        eps=XI,
        norm=np.inf,
        verbose=False,
    )
    start = time.perf_counter()
    art.generate(x_train.numpy())
    seconds = time.perf_counter() - start
    v = on_grid(torch.from_numpy(art.noise).float(), XI)
    rows.append(["ART", f"{held_out_rate(model, x_test, y_test, v):.1%}", f"{seconds:.1f}"])
    print(f"Universal perturbations, digits, xi = {XI}, at most {PASSES} passes:")
    print_table(["implementation", "held-out fooled", "seconds"], rows)


def compare_patch(steps):
    from art.attacks.evasion import AdversarialPatchPyTorch

    model = load_model("efficientnet_lite0")
    fitting, held_out = universal.split_photos(0)
    sets = universal.photo_sets(fitting, held_out)
    x_fit = sets["fitting"][0]
    side = patch_side(SHARE)
    start = time.perf_counter()
    ours = AdversarialPatch(model, side, TOASTER, steps, lr=LR)(x_fit).patch
    our_seconds = time.perf_counter() - start
    art = AdversarialPatchPyTorch(
        art_classifier(model, (3, 224, 224), 1000),
        rotation_max=22.5,
        scale_min=0.8 * side / 224,
        scale_max=side / 224,
        distortion_scale_max=0.0,
        learning_rate=LR,
        max_iter=steps,
        batch_size=2 * len(x_fit),
        patch_shape=(3, side, side),
        patch_type="square",
        targeted=True,
        verbose=False,
    )
    twice = x_fit.repeat(2, 1, 1, 1)  # two placements of each photo per step, as ours
    target = np.eye(1000, dtype=np.float32)[[TOASTER] * len(twice)]
    start = time.perf_counter()
    art_patch, _ = art.generate(x=twice.numpy(), y=target)
    art_seconds = time.perf_counter() - start
    x = torch.cat([sets["held-out"][0], sets["samples"][0]])
    placements = universal.placements_for(x, side, PLACEMENTS, 0)
    rows = []
    for name, patch, seconds in (
        ("project", ours, our_seconds),
        ("ART", (torch.from_numpy(art_patch).float() * 255).round() / 255, art_seconds),
    ):
        share = (classes(model, universal.patched(x, patch, placements)) == TOASTER).float()
        rows.append([name, f"{share.mean().item():.1%}", f"{seconds:.1f}"])
    print(f"\nThe patch, Lite0, {steps} steps, {len(x) * PLACEMENTS} held-out placements:")
    print_table(["implementation", "toaster", "seconds"], rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=Path("outputs/digits_standard.pth"))
    parser.add_argument("--patch-steps", type=int, default=150, help="step 15's default")
    parser.add_argument("--part", choices=("universal", "patch"), help="one of the two only")
    args = parser.parse_args(argv)
    if args.part != "patch":
        compare_universal(args.weights)
    if args.part != "universal":
        compare_patch(args.patch_steps)


if __name__ == "__main__":
    run(main)
