"""Differentiable image transformations, from torchvision's tensor transforms (v2 functional),
on pixels in [0, 1], shape (N, 3, H, W): what the lessons that must survive the world share.

The camera (step 16): a distribution of transformations standing in for print-and-photograph.
The patch (step 15, Brown et al. 2017): placed on photos at a random location, scale and
rotation.

    side = patch_side(0.1)                              # a square covering 10% of 224 x 224
    placements = random_placements(n, side, generator)  # where, how big, how turned
    images = paste_patch(photos, patch, placements)     # differentiable in the patch
"""

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from adversarial.attacks.shared import straight_through
from adversarial.defenses import jpeg

# --- The camera (step 16): a distribution standing in for print-and-photograph ---------------

BLUR_KERNEL = 5  # pixels: wide enough for a blur of sigma 1
GREY = 0.5  # what shows where the photo no longer covers the frame (after a turn or a shift)


@dataclass(frozen=True)
class CameraTransform:
    """One photograph of the printed image: turned, rescaled and moved in the frame, lit
    brighter or darker, with more or less contrast, slightly out of focus, saved as JPEG.

    Every step but JPEG is a differentiable tensor operation; JPEG (Pillow's, exactly what
    a file holds) passes the gradient straight through (BPDA, as the attacks' defenses do).
    The identity is CameraTransform(); each value keeps its pixels in [0, 1].
    """

    angle: float = 0.0  # degrees, clockwise (as torchvision's affine turns)
    scale: float = 1.0
    shift: tuple = (0.0, 0.0)  # right and down, in shares of the width and the height
    brightness: float = 1.0  # a factor on every pixel
    contrast: float = 1.0  # a factor on the distance to the mean grey
    blur: float = 0.0  # the Gaussian's sigma in pixels; 0: in focus
    quality: int | None = None  # JPEG quality; None: no JPEG

    def __call__(self, x):
        # Turned about the centre with mid-grey around it (bilinear is linear: the zeros
        # torchvision fills in become GREY once it is added back).
        affine = TF.affine(
            x - GREY,
            angle=self.angle,
            translate=[self.shift[0] * x.shape[-1], self.shift[1] * x.shape[-2]],
            scale=self.scale,
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )
        x = TF.adjust_contrast(TF.adjust_brightness(affine + GREY, self.brightness), self.contrast)
        if self.blur > 0:
            x = TF.gaussian_blur(x, [BLUR_KERNEL, BLUR_KERNEL], [self.blur, self.blur])
        if self.quality is not None:
            x = straight_through(x, functools.partial(jpeg, quality=self.quality))
        return x


@dataclass(frozen=True)
class Camera:
    """The distribution of CameraTransforms: every parameter uniform in its range (the
    angle in [-max_angle, max_angle], the shift up to `shift` of the side each way), drawn
    from a torch.Generator so that a seed gives the same photographs every time.

    Athalye et al. (2018) sampled rotations, rescaling, shifts and lighting changes for
    their 2D examples; blur and JPEG stand in for the camera itself.
    """

    max_angle: float = 22.5
    scale: tuple = (0.9, 1.1)
    shift: float = 0.05
    brightness: tuple = (0.8, 1.2)
    contrast: tuple = (0.8, 1.2)
    blur: tuple = (0.0, 1.0)
    quality: tuple | None = (60, 95)  # None: no JPEG

    def sample(self, generator, angle=None):
        """One CameraTransform drawn from `generator`; `angle` fixes the rotation
        (the rest is drawn all the same, so fixing it leaves the other draws unchanged)."""
        u = torch.rand(8, generator=generator, dtype=torch.float64).tolist()

        def between(low, high, share):
            return low + (high - low) * share

        low, high = self.quality or (0, 0)
        drawn_angle = between(-self.max_angle, self.max_angle, u[0])
        return CameraTransform(
            angle=drawn_angle if angle is None else angle,
            scale=between(*self.scale, u[1]),
            shift=tuple(between(-self.shift, self.shift, v) for v in u[2:4]),
            brightness=between(*self.brightness, u[4]),
            contrast=between(*self.contrast, u[5]),
            blur=between(*self.blur, u[6]),
            quality=None if self.quality is None else int(between(low, high + 1 - 1e-9, u[7])),
        )


# --- The patch (step 15): placed anywhere on a photo, differentiable in the patch ---------


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
