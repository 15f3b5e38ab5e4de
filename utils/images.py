"""Images in and out: one loader for every format Pillow reads, one 8-bit writer.

Tensors here are pixels in [0, 1], shape (N, 3, 224, 224); the model's normalisation
lives in the model wrapper (utils/models.py), not in the image pipeline.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import transforms
from tqdm import tqdm

from utils.cli import UserError, check_writable_dir, write_atomically

SIZE = 224
# The tutorial's preprocessing, minus Normalize (the model applies its own).
CROP = transforms.Compose(
    [transforms.Resize(SIZE), transforms.CenterCrop(SIZE), transforms.ToTensor()]
)
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


def load_image_tensor(path):
    """The tutorial's crop of `path`: Resize(224) + CenterCrop(224), pixels in [0, 1]."""
    image = load_image(path)
    # A 1x100000 strip would be upscaled to 224x22400000 before the crop: trim its long
    # side first. Only the central square survives the crop, so nothing visible changes.
    short = min(image.size)
    if max(image.size) > MAX_ASPECT * short:
        keep = MAX_ASPECT * short
        image = transforms.CenterCrop((min(image.height, keep), min(image.width, keep)))(image)
    return CROP(image).unsqueeze(0)


def to_uint8(x):
    """(1, 3, H, W) or (3, H, W) pixels in [0, 1] -> (H, W, 3) uint8, clipped and rounded."""
    x = x.detach().cpu()
    x = x.squeeze(0) if x.dim() == 4 else x
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def from_uint8(pixels):
    """(H, W, 3) uint8 -> (1, 3, H, W) float pixels in [0, 1]: exact inverse of to_uint8."""
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def check_image_output(path):
    """Fail before any work if `path` cannot be written as an image; return its format."""
    extension = Path(path).suffix.lower()
    formats = Image.registered_extensions()
    if extension not in formats:
        raise UserError(f"{path}: unknown image extension {extension!r} (use .png)")
    check_writable_dir(Path(path).parent)
    return formats[extension]


def save_image(x, path, **save_options):
    """Save pixels in [0, 1] as an 8-bit image (format from the suffix), atomically."""
    image_format = check_image_output(path)
    image = Image.fromarray(to_uint8(x))
    write_atomically(path, lambda tmp: image.save(tmp, format=image_format, **save_options))


def list_images(paths):
    """Expand folders into their files (sorted, hidden files skipped); keep files as given."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not files:
        raise UserError(f"no files found in {', '.join(map(str, paths))}")
    return files


def one_file_given(inputs):
    """True when the command line names a single file (not a folder): steps 2 and 5 then
    print the tutorial's one-image output instead of a table."""
    return len(inputs) == 1 and not Path(inputs[0]).is_dir()


def image_batches(paths, batch_size, description):
    """Yield ({path: crop}, {path: error}) per batch of paths, with a progress bar.

    A file that cannot be read is reported on stderr and skipped, so one bad file
    in a folder does not stop the rest.
    """
    with tqdm(total=len(paths), unit="image", desc=description) as progress:
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            images, errors = {}, {}
            for path in batch:
                try:
                    images[path] = load_image_tensor(path)
                except UserError as err:
                    tqdm.write(f"error: {err}", file=sys.stderr)
                    errors[path] = str(err)
            yield images, errors
            progress.update(len(batch))
