"""Input-transformation defenses: squeeze the image before the model sees it.

Each defense takes pixels in [0, 1], shape (N, 3, H, W), and returns the same shape on
the same device and dtype: exactly what saving the squeezed image and reading the file
back gives, so every number measured with them can be reproduced from files. They read
x.detach() and have no gradient of their own; the attacks in adversarial/attacks/ pass the
gradient straight through them (BPDA), as an attacker who knows the defense would.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import write_atomically
from adversarial.plumbing.images import from_uint8, save_image, to_uint8


def _check_int(value, what, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"{what} must be an integer, got {value!r}")
    if high is None and value < low:
        raise UserError(f"{what} must be at least {low}, got {value}")
    if high is not None and not low <= value <= high:
        raise UserError(f"{what} must be from {low} to {high}, got {value}")


def check_quality(quality):
    _check_int(quality, "JPEG quality", 1, 100)


def check_bits(bits):
    _check_int(bits, "bit depth", 1, 8)


def check_size(size):
    _check_int(size, "median filter size", 3)
    if size % 2 == 0:
        raise UserError(f"median filter size must be odd (a centre pixel), got {size}")


def _per_image(x, squeeze):
    """Apply squeeze, (H, W, 3) uint8 -> same, to the 8-bit rounding of each image in x."""
    squeezed = [from_uint8(squeeze(np.ascontiguousarray(to_uint8(image)))) for image in x]
    return torch.cat(squeezed).to(device=x.device, dtype=x.dtype)


def encode_jpeg(pixels, quality=75):
    """(H, W, 3) uint8 -> the bytes of the JPEG file Pillow writes at `quality`."""
    check_quality(quality)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data):
    """JPEG file bytes -> (H, W, 3) uint8, as plumbing.images.load_image reads the file."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def jpeg(x, quality=75):
    """JPEG compression at `quality` (Pillow's default, 75, is what the tutorial used)."""
    return _per_image(x, lambda pixels: decode_jpeg(encode_jpeg(pixels, quality)))


def save_jpeg(x, path, quality=75):
    """Write the image x (1, 3, H, W) as a JPEG file; return what that file decodes to,
    so the image classified is byte for byte the file on disk."""
    data = encode_jpeg(to_uint8(x), quality)
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
    return from_uint8(decode_jpeg(data)).to(device=x.device, dtype=x.dtype)


def bit_depth(x, bits):
    """Feature squeezing (Xu et al. 2018): keep 2**bits levels per channel.

    The levels are stored as their nearest 8-bit values, so the result survives a PNG.
    Neither rounding can tie: 255 and 2**bits - 1 are both odd.
    """
    check_bits(bits)
    levels = 2**bits - 1

    def squeeze(pixels):
        kept = np.rint(pixels / 255 * levels)
        return np.rint(kept * 255 / levels).astype(np.uint8)

    return _per_image(x, squeeze)


def median(x, size):
    """Median filter over size x size pixels, per channel (OpenCV; edges replicated)."""
    import cv2  # only here: the other defenses need no OpenCV

    check_size(size)
    return _per_image(x, lambda pixels: cv2.medianBlur(pixels, size))


def _save_png(defense):
    def save(x, path, value):
        squeezed = defense(x, value)
        save_image(squeezed, path)  # PNG is lossless: the file holds exactly `squeezed`
        return squeezed

    return save


@dataclass(frozen=True)
class Defense:
    name: str  # as printed: "Prediction after JPEG (quality 75)"
    parameter: str  # its strength: the keyword argument and the step 6 option
    default: int
    sweep: tuple  # the strengths step 6 --sweep tries
    axis: str  # the sweep plot's x label
    apply: Callable  # apply(x, value) -> squeezed x
    save: Callable  # save(x, path, value) -> squeezed x, as the file written reads back
    check: Callable  # check(value) raises UserError for a value apply() refuses
    suffixes: tuple  # file types that hold the result exactly
    default_file: str  # step 6's output in outputs/ by default


DEFENSES = {
    "jpeg": Defense(
        name="JPEG",
        parameter="quality",
        default=75,
        sweep=tuple(range(10, 101, 10)),
        axis="JPEG quality",
        apply=jpeg,
        save=save_jpeg,
        check=check_quality,
        suffixes=(".jpg", ".jpeg"),
        default_file="adversarial.jpg",
    ),
    # Xu et al. found 5 bits harmless to clean ImageNet accuracy; 1..8 shows the whole range.
    "bits": Defense(
        name="bit-depth reduction",
        parameter="bits",
        default=5,
        sweep=tuple(range(1, 9)),
        axis="bits per channel",
        apply=bit_depth,
        save=_save_png(bit_depth),
        check=check_bits,
        suffixes=(".png",),
        default_file="adversarial_bits.png",
    ),
    "median": Defense(
        name="median filter",
        parameter="size",
        default=3,
        sweep=(3, 5, 7),
        axis="median filter size (pixels)",
        apply=median,
        save=_save_png(median),
        check=check_size,
        suffixes=(".png",),
        default_file="adversarial_median.png",
    ),
}
