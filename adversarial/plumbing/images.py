"""Images in and out: one loader for every format Pillow reads, one 8-bit writer.

Tensors here are pixels in [0, 1], shape (N, 3, 224, 224); the model's normalisation
lives in the model wrapper (adversarial/models.py), not in the image pipeline.
"""

import contextlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_image_output, check_input_file, write_atomically

SIZE = 224
MAX_ASPECT = 16
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
TIFF_BITS_PER_SAMPLE, TIFF_SAMPLE_FORMAT = 258, 339
TIFF_SIGNED_INTEGERS = 2  # a SampleFormat: two's complement


def load_image(path):
    """Open any image Pillow reads as an RGB PIL image, EXIF orientation applied."""
    path = Path(path)
    check_input_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice its limit: refuse those too. Every
            # other warning (a bad EXIF tag, say) is Pillow coping, not the learner's business.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _refuse_signed_levels(img, path)
                with _c_messages_muted():
                    img.load()
                return _to_rgb(ImageOps.exif_transpose(img), path)
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(
            f"{path}: too many pixels (over Pillow's decompression-bomb limit "
            f"of {Image.MAX_IMAGE_PIXELS} pixels)"
        ) from None
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{path}: too large to decode in this machine's memory") from None
    except Exception as err:  # decoders raise many types for a corrupt file: all mean that
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise UserError(f"{path}: truncated or corrupt image ({reason})") from None


@contextlib.contextmanager
def _c_messages_muted():
    """Point file descriptor 2 at /dev/null meanwhile. libtiff reports a broken TIFF (a bad
    tag value, a corrupt strip) with lines of its own on stderr, written from C around
    sys.stderr (Pillow mutes libtiff's warnings, not its errors): the file is read all the
    same, or its one `error:` line says enough."""
    if sys.__stderr__ is None:
        # Started with stderr closed (`2>&-`): fd 2 went to the next file opened, perhaps
        # this very image, so it is left alone.
        yield
        return
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _refuse_signed_levels(img, path):
    """A TIFF of signed 8- or 16-bit integers has no single mapping to 8-bit levels: shift
    them by half their range, or clip the negatives (as scikit-image does)? So it is refused
    rather than guessed. Pillow would read signed 8-bit levels as unsigned, and signed
    16-bit ones (its I;16S) on the unsigned scale. 32-bit integers are Pillow's own mode I,
    which its TIFF writer marks signed: their values are kept, and must lie in 0..65535."""
    tags = getattr(img, "tag_v2", {})
    bits = max(tags.get(TIFF_BITS_PER_SAMPLE, (1,)))  # TIFF's default: 1
    if TIFF_SIGNED_INTEGERS in tags.get(TIFF_SAMPLE_FORMAT, ()) and bits <= 16:
        raise UserError(
            f"{path}: signed {bits}-bit levels have no single mapping to 0..255: "
            "save the image as unsigned integers"
        )


def _to_rgb(img, path):
    if img.mode in SIXTEEN_BIT_MODES or img.mode == "F":
        img = Image.fromarray(_deep_levels_to_uint8(img, path))
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        # Transparent pixels are shown on white, as an image viewer would.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return img.convert("RGB")


def _deep_levels_to_uint8(img, path):
    """16-bit, 32-bit integer and float images as 8-bit levels, scaled, never clipped
    (Pillow's convert() would clip them at 255): integers must fit 16 bits (0..65535),
    floats must lie in [0, 1]; anything else is refused rather than guessed. Computed in
    the image's own width (no float64 copy: a 9000x9000 16-bit photo stays a few
    hundred MB)."""
    values = np.asarray(img)
    if img.mode == "F":
        if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise UserError(f"{path}: a float image must hold values in [0, 1]")
        return np.rint(values * np.float32(255)).astype(np.uint8)
    if values.min() < 0 or values.max() > 65535:
        raise UserError(f"{path}: a 32-bit integer image must hold values in 0..65535")
    # round(v / 257) in integers: v / 257 is never exactly halfway between two levels.
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def resize_and_crop(image, size=SIZE):
    """The tutorial's Resize(size) + CenterCrop(size) on a PIL image, computed as torchvision
    does (the tests compare the two), without importing torchvision."""
    width, height = image.size
    short, long = sorted(image.size)
    # A 1x100000 strip would be upscaled to 224x22400000 before the crop: trim its long
    # side first. Only the central square survives the crop, so nothing visible changes.
    if long > MAX_ASPECT * short:
        keep = MAX_ASPECT * short
        image = center_crop(image, min(width, keep), min(height, keep))
        width, height = image.size
        short, long = sorted(image.size)
    resized_long = int(size * long / short)
    new_size = (size, resized_long) if width <= height else (resized_long, size)
    if new_size != image.size:
        image = image.resize(new_size, Image.BILINEAR)
    return center_crop(image, size, size)


def center_crop(image, width, height):
    left = round((image.width - width) / 2)
    top = round((image.height - height) / 2)
    return image.crop((left, top, left + width, top + height))


def load_image_tensor(path):
    """The tutorial's crop of `path`: Resize(224) + CenterCrop(224), pixels in [0, 1]."""
    return from_uint8(resize_and_crop(load_image(path)))


def to_uint8(x):
    """(1, 3, H, W) or (3, H, W) pixels in [0, 1] -> (H, W, 3) uint8, clipped and rounded."""
    x = x.detach().cpu()
    x = x.squeeze(0) if x.dim() == 4 else x
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def from_uint8(pixels):
    """(H, W, 3) uint8 -> (1, 3, H, W) float pixels in [0, 1]: exact inverse of to_uint8."""
    levels = torch.from_numpy(np.array(pixels, dtype=np.uint8))
    return levels.permute(2, 0, 1).contiguous().float().div(255).unsqueeze(0)


def image_writer(x, path, **save_options):
    """A write(tmp) function that saves pixels x in [0, 1] to `path` as an 8-bit image."""
    image_format = check_image_output(path)
    image = Image.fromarray(to_uint8(x))
    return lambda tmp: image.save(tmp, format=image_format, **save_options)


def checked_image_writer(x, path, **save_options):
    """image_writer, then the file read back: it must hold exactly x, the pixels judged."""
    save = image_writer(x, path, **save_options)

    def write(tmp):
        save(tmp)
        if not torch.equal(load_image_tensor(tmp), x):
            raise UserError(f"{path}: reloaded image differs from the judged one")

    return write


def save_image(x, path, **save_options):
    """Save pixels in [0, 1] as an 8-bit image (format from the suffix), atomically."""
    write_atomically(path, image_writer(x, path, **save_options))


def grey_writer(x, path):
    """A write(tmp) function that saves one grey image x (1, H, W), pixels in [0, 1] on the
    8-bit grid, as an 8-bit greyscale PNG, then reads it back: it must hold exactly x."""
    check_image_output(path)
    levels = x.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)[0].numpy()

    def write(tmp):
        Image.fromarray(levels).save(tmp, format="PNG")
        if not torch.equal(load_grey(tmp), x.detach().cpu().float()):
            raise UserError(f"{path}: reloaded image differs from the judged one")

    return write


def load_grey(path):
    """A greyscale image as (1, H, W) pixels in [0, 1], as saved (no resizing)."""
    with Image.open(path) as image:
        levels = np.array(image.convert("L"), dtype=np.uint8)
    return torch.from_numpy(levels).float().div(255).unsqueeze(0)
