"""Step 16's measurements and report: how often a saved image keeps its class when it is
photographed, over fresh random transformations and against the rotation angle."""

import hashlib
from typing import NamedTuple

import torch

from adversarial.models import device_of
from adversarial.plumbing.figures import curves_writer
from adversarial.plumbing.labels import short_label
from adversarial.plumbing.tables import csv_writer, format_table
from adversarial.transforms import CameraTransform

ROWS = ("clean photo", "plain PGD", "EOT")  # the three images measured for each photo
# One change of the camera at a time, each within (or at the edge of) the Camera's ranges.
ONE_CHANGE = {
    "turned 1 degree": CameraTransform(angle=1.0),
    "turned 5 degrees": CameraTransform(angle=5.0),
    "scaled by 0.95": CameraTransform(scale=0.95),
    "scaled by 1.05": CameraTransform(scale=1.05),
    "shifted 2% right": CameraTransform(shift=(0.02, 0.0)),
    "brightness 0.8": CameraTransform(brightness=0.8),
    "brightness 1.2": CameraTransform(brightness=1.2),
    "contrast 0.8": CameraTransform(contrast=0.8),
    "blurred, sigma 1": CameraTransform(blur=1.0),
    "JPEG quality 95": CameraTransform(quality=95),
    "JPEG quality 60": CameraTransform(quality=60),
}


def fresh_generator(seed):
    """A generator for the measurement's transformations, from the seed but not the
    attack's stream: the measured photographs are never ones the attack sampled."""
    digest = hashlib.sha256(f"{seed}:measure".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@torch.no_grad()
def shares(model, x, wanted, transformations):
    """(N,) for images x (N, 3, H, W): the share of `transformations` under which the model
    classifies t(x_i) as wanted_i. Each transformation sees every image in one batch."""
    hits = torch.zeros(len(x))
    for t in transformations:
        hits += (model(t(x)).argmax(1).cpu() == wanted).float()
    return hits / len(transformations)


class Measured(NamedTuple):
    fresh: torch.Tensor  # (3, photos): share of the fresh transformations, per ROWS
    by_angle: torch.Tensor  # (angles, 3, photos): share of the draws at each angle


def _images_and_wanted(model, clean, plain, eot, own, target):
    """The three images of every photo in one batch (ROWS' order) on the model's device,
    and the class each should keep: the photo's own, then the target twice."""
    x = torch.cat([clean, plain, eot]).to(device_of(model))
    return x, torch.cat([own, torch.full_like(own, target), torch.full_like(own, target)])


def measure(model, clean, plain, eot, own, target, camera, angles, fresh, draws, seed):
    """The clean photos (judged against their own class), plain PGD's and EOT's PNGs
    (against the target), under `fresh` random transformations, and under `draws` at
    each angle of `angles` (the rest of each transformation drawn as usual)."""
    x, wanted = _images_and_wanted(model, clean, plain, eot, own, target)
    generator = fresh_generator(seed)
    random = [camera.sample(generator) for _ in range(fresh)]
    n = len(clean)
    by_angle = []
    for angle in angles:
        fixed = [camera.sample(generator, angle=angle) for _ in range(draws)]
        by_angle.append(shares(model, x, wanted, fixed).view(3, n))
    return Measured(shares(model, x, wanted, random).view(3, n), torch.stack(by_angle))


@torch.no_grad()
def print_one_change(model, clean, plain, eot, own, target):
    """Which single change of the camera each image survives: classified as wanted (its
    own class for the clean photo, the target for the others), for each photo."""
    x, wanted = _images_and_wanted(model, clean, plain, eot, own, target)
    n = len(clean)
    rows = [["as saved", *_counts(model(x).argmax(1).cpu() == wanted, n)]]
    for name, t in ONE_CHANGE.items():
        rows.append([name, *_counts(model(t(x)).argmax(1).cpu() == wanted, n)])
    print("One change at a time: still classified as wanted?")
    for line in format_table(["photograph", *ROWS], rows):
        print(line)


def _counts(hits, n):
    """Per image kind: yes or no for one photo, else how many of the photos."""
    per_kind = hits.view(3, n).sum(1).tolist()
    return [("yes" if k else "no") if n == 1 else f"{k}/{n}" for k in per_kind]


def percent(share):
    return f"{100 * share:.0f}%"


def table(measured, names, own, target):
    """Header and rows: each photo's shares, and for several photos their mean and range."""
    header = ["photo", "its class", "clean: its class", f"plain PGD: {short_label(target)}"]
    header.append(f"EOT: {short_label(target)}")
    rows = [
        [name, short_label(c), *map(percent, measured.fresh[:, i])]
        for i, (name, c) in enumerate(zip(names, own.tolist(), strict=True))
    ]
    if len(names) > 1:
        fresh = measured.fresh
        rows.append(["mean", "", *map(percent, fresh.mean(1))])
        low, high = fresh.aminmax(dim=1)
        spread = [f"{percent(a)}-{percent(b)}" for a, b in zip(low, high, strict=True)]
        rows.append(["range", "", *spread])
    return header, rows


def print_report(measured, names, own, target, fresh):
    header, rows = table(measured, names, own, target)
    print(f"Classified as wanted under {fresh} fresh random transformations of the saved PNGs:")
    for line in format_table(header, rows):
        print(line)


def report_writers(measured, names, own, target, angles, max_angle, title, plot, csv):
    """{path: write(tmp)}: the plot of success against the rotation angle (the mean over
    the photos), and the CSV of every share measured."""
    target_name = short_label(target)
    curves = [
        ("clean photo: its own class", measured.by_angle[:, 0].mean(1).tolist(), "g^-"),
        (f"plain PGD: {target_name}", measured.by_angle[:, 1].mean(1).tolist(), "bs-"),
        (f"EOT: {target_name}", measured.by_angle[:, 2].mean(1).tolist(), "ro-"),
    ]
    marks = [("angles sampled", -max_angle, "grey"), (None, max_angle, "grey")]
    header = ["photo", "image", "classified as", "share of fresh", *(f"{a:g} deg" for a in angles)]
    rows = []
    for i, name in enumerate(names):
        wanted = [short_label(own[i]), target_name, target_name]
        for row, (image, cls) in enumerate(zip(ROWS, wanted, strict=True)):
            per_angle = [f"{s:.3f}" for s in measured.by_angle[:, row, i].tolist()]
            rows.append([name, image, cls, f"{measured.fresh[row, i]:.3f}", *per_angle])
    return {
        plot: curves_writer(
            [(title, curves)],
            list(angles),
            plot,
            "rotation (degrees)",
            "share classified as wanted",
            mark=marks,
        ),
        csv: csv_writer(header, rows),
    }
