"""Differentiable image transformations, from torchvision's tensor transforms (no warps
written by hand): here, placing a patch on photos at a random location, scale and rotation
(step 15's adversarial patch, Brown et al. 2017).

    side = patch_side(0.1)                              # a square covering 10% of 224 x 224
    placements = random_placements(n, side, generator)  # where, how big, how turned
    images = paste_patch(photos, patch, placements)     # differentiable in the patch
"""

import math
from typing import NamedTuple

import torch


class PatchPlacement(NamedTuple):
    """Where one patch lands on a 224 x 224 image: turned by `angle` degrees about its centre,
    scaled by `scale`, its centre moved (dx, dy) pixels from the image's centre."""

    angle: float
    scale: float
    dx: int
    dy: int


def patch_side(share, size=224):
    """The side in pixels of a square patch covering `share` of a size x size image (as
    near as whole pixels allow: 10% of 224 x 224 is 71 x 71 = 10.05%)."""
    return max(1, round(math.sqrt(share) * size))


def random_placements(n, side, generator, scales=(1.0, 1.0), max_angle=22.5, size=224):
    """n placements of a side x side patch: scale uniform in `scales`, angle uniform in
    [-max_angle, max_angle] degrees, and a location uniform over the whole pixels where the
    turned, scaled patch stays inside the image."""
    placements = []
    for _ in range(n):
        u = torch.rand(4, generator=generator).tolist()
        scale = scales[0] + (scales[1] - scales[0]) * u[0]
        angle = max_angle * (2 * u[1] - 1)
        turn = math.radians(angle)
        half_extent = side * scale * (abs(math.cos(turn)) + abs(math.sin(turn))) / 2
        room = max(0, math.floor(size / 2 - half_extent - 1))  # a pixel's margin
        dx, dy = (round((2 * v - 1) * room) for v in u[2:])
        placements.append(PatchPlacement(angle, scale, dx, dy))
    return placements


def place_patch(patch, placement, size=224, interpolation="nearest"):
    """(canvas, mask): the patch (3, s, s) moved onto a size x size canvas of zeros (3, H, W),
    and the share of each pixel it covers (1, H, W), by torchvision's affine transform
    (the same warp for both). The canvas is premultiplied: canvas <= mask everywhere.
    'nearest' moves whole patch pixels (what a pasted print does); 'bilinear' blends them,
    for smoother gradients while training. Differentiable in the patch either way."""
    from torchvision.transforms.v2 import functional as F

    side = patch.shape[-1]
    before = (size - side) // 2  # the patch's centre on the image's centre pixel
    padding = [before, before, size - side - before, size - side - before]
    rgba = torch.cat([patch, torch.ones_like(patch[:1])])  # the mask travels as a 4th channel
    canvas = F.pad(rgba, padding, fill=0)
    moved = F.affine(
        canvas,
        angle=placement.angle,
        translate=[placement.dx, placement.dy],
        scale=placement.scale,
        shear=[0.0, 0.0],
        interpolation=F.InterpolationMode(interpolation),
        center=[before + side / 2] * 2,  # torchvision's coordinates: pixel i spans [i, i + 1)
    )
    return moved[:3], moved[3:]


def paste_patch(images, patch, placements, interpolation="nearest"):
    """images (N, 3, H, W) in [0, 1], each with the patch at its own placement: covered
    pixels replaced (blended at the edges with 'bilinear'), every other pixel unchanged."""
    pasted = []
    for image, placement in zip(images, placements, strict=True):
        canvas, mask = place_patch(patch, placement, image.shape[-1], interpolation)
        pasted.append(canvas + (1 - mask) * image)
    return torch.stack(pasted)
