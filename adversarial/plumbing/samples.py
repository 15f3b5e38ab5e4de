"""Photos that need no download (steps 1, 2 and 9, tests): scikit-image's samples, and
foolbox's 20 ImageNet validation photos, whose true classes are known."""

import numpy as np

from adversarial.plumbing.datafiles import IMAGENET_COUNT, imagenet_files
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.labels import recorded_class

# Name -> how scikit-image's `data` module gives it (the motorcycle is a stereo pair's left).
SKIMAGE_PHOTOS = {
    "coffee": lambda data: data.coffee(),
    "chelsea": lambda data: data.chelsea(),
    "astronaut": lambda data: data.astronaut(),
    "rocket": lambda data: data.rocket(),
    "motorcycle": lambda data: data.stereo_motorcycle()[0],
    "camera": lambda data: data.camera(),  # greyscale
}
# foolbox's photos, read from the installed package (never copied here): imagenet_00 ... 19.
IMAGENET_PHOTOS = tuple(f"imagenet_{i:02d}" for i in range(IMAGENET_COUNT))
PHOTOS = (*SKIMAGE_PHOTOS, *IMAGENET_PHOTOS)
TRUE_CLASS = "true class"  # the PNG text chunk where step 1 records a labelled photo's class


def sample_pixels(name):
    """(H, W, 3) uint8 RGB pixels of a sample photo (a greyscale one repeated 3 times)."""
    if name in IMAGENET_PHOTOS:
        from adversarial.plumbing.images import load_image

        path, _ = imagenet_files()[name]
        return np.asarray(load_image(path))
    from skimage import data  # only here: importing it takes a while

    pixels = SKIMAGE_PHOTOS[name](data)
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def sample_photo(name):
    """The tutorial's 224x224 crop of a sample photo: (1, 3, 224, 224) pixels in [0, 1]."""
    from PIL import Image

    from adversarial.plumbing.images import from_uint8, resize_and_crop

    return from_uint8(resize_and_crop(Image.fromarray(sample_pixels(name))))


def true_class(name):
    """The ImageNet class index of a labelled photo; None for scikit-image's (not known)."""
    return imagenet_files()[name][1] if name in IMAGENET_PHOTOS else None


def recorded_true_class(path):
    """The true class step 1 recorded in a labelled photo's PNG; None for any other image."""
    from PIL import Image

    with Image.open(path) as image:
        record = getattr(image, "text", {}).get(TRUE_CLASS)
    if record is None:
        return None
    index = recorded_class(record)
    if index is None:
        raise UserError(f"{path}: its {TRUE_CLASS!r} record is damaged ({record[:20]!r})")
    return index


def photos_classified_right(model, names):
    """The labelled photos `names` on the model's device, their true classes, and which of
    them the model classifies right (only these can be fooled): (x, labels, (N,) bool)."""
    import torch

    from adversarial.models import device_of, predict

    device = device_of(model)
    x = torch.cat([sample_photo(name) for name in names]).to(device)
    labels = torch.tensor([true_class(name) for name in names], device=device)
    right = predict(model, x).argmax(1).to(device) == labels
    if not right.any():
        raise UserError(f"{model.name} classifies none of the photos right: nothing to attack")
    return x, labels, right
