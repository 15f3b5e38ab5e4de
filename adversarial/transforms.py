"""Differentiable image transformations, from torchvision's tensor transforms (v2 functional),
on pixels in [0, 1], shape (N, 3, H, W): what the lessons that must survive the world share.
"""

# --- The camera (step 16): a distribution standing in for print-and-photograph ---------------

import functools
from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from adversarial.attacks.shared import straight_through
from adversarial.defenses import jpeg

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
