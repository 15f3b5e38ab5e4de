"""Images in and out: one loader for every format Pillow reads, one 8-bit writer.

Tensors here are pixels in [0, 1], shape (N, 3, 224, 224); the model's normalisation
lives in the model wrapper (utils/models.py), not in the image pipeline.
"""

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from utils.errors import UserError
from utils.files import check_image_output, write_atomically

SIZE = 224
MAX_ASPECT = 16
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def load_image(path):
    """Open any image Pillow reads as an RGB PIL image, EXIF orientation applied."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings(), Image.open(path) as img:
            # Pillow only warns between its limit and twice its limit: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(
            f"{path}: too many pixels (over Pillow's decompression-bomb limit "
            f"of {Image.MAX_IMAGE_PIXELS} pixels)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UserError(f"{path}: truncated or corrupt image ({err})") from None


def _to_rgb(img):
    if img.mode in SIXTEEN_BIT_MODES:
        # Pillow's convert() would clip 16-bit values at 255; scale them instead.
        levels = np.asarray(img, dtype=np.float64) / 257.0
        img = Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        # Transparent pixels are shown on white, as an image viewer would.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return img.convert("RGB")


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


def save_image(x, path, **save_options):
    """Save pixels in [0, 1] as an 8-bit image (format from the suffix), atomically."""
    write_atomically(path, image_writer(x, path, **save_options))
