"""Step 15: the patch's placement (in [0, 1], differentiable, covering its share and nothing
else), the universal perturbations within their bound on the saved file, fooling rates
recomputed here from the saved files, seeded runs reproducible, bad input."""

import math
import re

import numpy as np
import pytest
import torch
from conftest import LITE0, assert_clean_error, call, succeeded
from PIL import Image
from torch import nn

import step_15_universal
from adversarial import digits
from adversarial.attacks.noise import random_signs
from adversarial.attacks.universal import AdversarialPatch, UniversalAscent, UniversalPerturbation
from adversarial.models import Classifier, load_model
from adversarial.plumbing.samples import SKIMAGE_PHOTOS, sample_photo, true_class
from adversarial.transforms import (
    PatchPlacement,
    paste_patch,
    patch_side,
    place_patch,
    random_placements,
)
from adversarial.universal import split_photos


def percent(share):
    return f"{share:.0%}"


def test_pasting_keeps_pixels_in_range_and_is_differentiable_in_the_patch():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 12, 12, generator=generator, dtype=torch.float64)
    patch = torch.rand(3, 3, 3, generator=generator, dtype=torch.float64)
    placements = random_placements(2, 3, generator, scales=(0.8, 1.0), max_angle=30, size=12)
    for mode in ("nearest", "bilinear"):
        pasted = paste_patch(images, patch, placements, mode)
        assert pasted.min() >= 0 and pasted.max() <= 1
    patch.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: paste_patch(images, p, placements, "bilinear"), patch)
    # Pixels at 0 and at 1 stay in range too, and gradients reach them.
    extremes = paste_patch(torch.ones_like(images), patch.detach().round(), placements, "bilinear")
    assert extremes.min() >= 0 and extremes.max() <= 1 + 1e-12


def test_the_patch_covers_exactly_its_share_and_nothing_outside_it_changes():
    side = patch_side(0.1)
    assert side == 71  # 71 x 71 = 10.05% of 224 x 224: the nearest whole-pixel square
    generator = torch.Generator().manual_seed(1)
    photo = sample_photo("coffee")
    patch = torch.rand(3, side, side, generator=generator)
    canvas, mask = place_patch(patch, PatchPlacement(0.0, 1.0, 10, -20))
    assert mask.sum().item() == side * side
    top, left = (224 - side) // 2 - 20, (224 - side) // 2 + 10
    assert torch.equal(canvas[:, top : top + side, left : left + side], patch)
    placements = random_placements(20, side, generator)
    for placement, pasted in zip(
        placements, paste_patch(photo.repeat(20, 1, 1, 1), patch, placements), strict=True
    ):
        _, mask = place_patch(patch, placement)
        outside = mask[0] == 0
        assert torch.equal(pasted[:, outside], photo[0][:, outside])
        assert set(mask.unique().tolist()) <= {0.0, 1.0}  # whole pixels: the patch's or the photo's
        assert mask.sum().item() == pytest.approx(
            side * side, rel=0.02
        )  # turned: a few edge pixels


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(0)
    return digits.build_model().requires_grad_(False)


@pytest.mark.parametrize("method", ["deepfool", "ascent"])
def test_universal_perturbations_stay_within_xi_on_the_grid_and_are_reproducible(
    digits_model, data, method
):
    x = data[0][:20]
    xi = 0.2
    make = {
        "deepfool": lambda: UniversalPerturbation(digits_model, xi, passes=2, candidates=3, seed=3),
        "ascent": lambda: UniversalAscent(digits_model, xi, steps=3),
    }[method]
    first, second = make()(x), make()(x)
    assert torch.equal(first.v, second.v)
    levels = first.v * 255
    assert first.v.shape == (1, 1, 8, 8)
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert levels.abs().max() <= math.floor(xi * 255) + 1e-4
    # Its last fooling rate, recomputed here: the share of x whose class changes.
    with torch.no_grad():
        changed = digits_model((x + first.v).clamp(0, 1)).argmax(1) != digits_model(x).argmax(1)
    assert first.fooling_rates[-1] == pytest.approx(changed.float().mean().item())


def test_a_patch_is_on_the_grid_in_range_and_reproducible():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    model = Classifier(net, (0.5,) * 3, (0.5,) * 3, "tiny").requires_grad_(False)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    patches = [AdversarialPatch(model, 6, 7, steps=3, seed=5)(x).patch for _ in range(2)]
    assert torch.equal(*patches)
    assert patches[0].shape == (3, 6, 6) and patches[0].min() >= 0 and patches[0].max() <= 1
    assert torch.equal(patches[0], (patches[0] * 255).round() / 255)


def table_rows(lines, first_header_word):
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first_header_word])
    return [line.split() for line in lines[start + 1 :] if line.strip()]


def test_the_universal_run_saves_v_within_xi_and_its_rates_hold_on_the_saved_file(tmp_path):
    args = ["--method", "ascent", "--steps", "1", "--transfer", "none", *LITE0]
    lines = succeeded(call(step_15_universal, *args, "--output-dir", tmp_path))
    v = np.load(tmp_path / "universal_r.npy", allow_pickle=False)
    assert v.dtype == np.float32 and v.shape == (3, 224, 224)
    assert np.allclose(v * 255, np.round(v * 255), atol=1e-4) and np.abs(v).max() * 255 <= 10 + 1e-4
    assert Image.open(tmp_path / "universal.png").format == "PNG"
    # Recomputed from the saved file: of the photos Lite0 gets right, the share that change.
    model = load_model("efficientnet_lite0")
    _, held_out = split_photos(0)
    rows = {row[1]: row for row in table_rows(lines, "model")}
    for name, photos in (("held-out", held_out),):  # the samples' rows are computed alike
        x = torch.cat([sample_photo(p) for p in photos])
        with torch.no_grad():
            clean = model(x).argmax(1)
            truth = torch.tensor(
                [true_class(p) if true_class(p) is not None else -1 for p in photos]
            )
            truth = torch.where(truth < 0, clean, truth)
            right = clean == truth
            fooled = model((x + torch.from_numpy(v)).clamp(0, 1)).argmax(1) != truth
            noisy = model(random_signs(x, 10 / 255, 0)).argmax(1) != truth
        row = rows[name]
        assert row[3] == str(int(right.sum()))
        assert row[4:6] == [
            percent(fooled[right].float().mean()),
            percent(noisy[right].float().mean()),
        ]


def test_the_patch_run_is_judged_on_its_saved_mosaics(tmp_path):
    args = ["--patch", "--steps", "1", "--placements", "1", *LITE0, "--output-dir", tmp_path]
    lines = succeeded(call(step_15_universal, *args))
    with Image.open(tmp_path / "patch.png") as image:
        assert image.size == (71, 71) and image.mode == "RGB"
    model = load_model("efficientnet_lite0")
    _, held_out = split_photos(0)
    x = torch.cat([sample_photo(p) for p in [*held_out, *SKIMAGE_PHOTOS]])
    with torch.no_grad():
        clean = model(x).argmax(1)
    rows = {row[0]: row for row in table_rows(lines, "pasted")}
    for kind in ("adversarial", "random", "crop"):
        with Image.open(tmp_path / f"patched_{kind}.png") as image:
            pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1) / 255
        tiles = torch.stack(pixels.split(224, dim=1))  # one placement: one tile per row
        changed = (tiles - x).abs().amax(1) > 0  # (N, 224, 224): pixels the patch replaced
        assert changed.flatten(1).sum(1).max() <= 71 * 71 * 1.02
        with torch.no_grad():
            predicted = model(tiles).argmax(1)
        toaster = percent((predicted == 859).float().mean())
        assert rows[kind][1:4] == ["patch", str(len(x)), toaster]
        assert rows[kind][4] == percent((predicted != clean).float().mean())


def test_the_digits_table_beside_random_signs(tmp_path, data):
    torch.manual_seed(0)
    path = tmp_path / "digits_standard.pth"
    torch.save(digits.build_model().state_dict(), path)
    args = ["--models", path, "--method", "ascent", "--steps", "2", "--epsilons", "0.2"]
    lines = succeeded(call(step_15_universal, *args))
    (row,) = table_rows(lines, "model")
    model = digits.load_trained(path)
    _, _, x, y = data
    with torch.no_grad():
        right = model(x).argmax(1) == y
        noisy = model(random_signs(x[right], 0.2, 0)).argmax(1) != y[right]
    assert row[:2] == ["standard", "0.2"] and row[3] == str(int(right.sum()))
    assert row[5] == percent(noisy.float().mean())
    assert re.fullmatch(r"\d+%", row[4])


def test_patch_and_digits_together_are_refused(tmp_path):
    result = call(step_15_universal, "--patch", "--models", tmp_path / "w.pth")
    assert_clean_error(result, "--patch or --models")
