"""Photos that ship with scikit-image: inputs that need no download (steps 1 and 9, tests)."""

import numpy as np

# Name -> how scikit-image's `data` module gives it (the motorcycle is a stereo pair's left).
PHOTOS = {
    "coffee": lambda data: data.coffee(),
    "chelsea": lambda data: data.chelsea(),
    "astronaut": lambda data: data.astronaut(),
    "rocket": lambda data: data.rocket(),
    "motorcycle": lambda data: data.stereo_motorcycle()[0],
    "camera": lambda data: data.camera(),  # greyscale
}


def sample_pixels(name):
    """(H, W, 3) uint8 RGB pixels of a sample photo (a greyscale one repeated 3 times)."""
    from skimage import data  # only here: importing it takes a while

    pixels = PHOTOS[name](data)
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def sample_photo(name):
    """The tutorial's 224x224 crop of a sample photo: (1, 3, 224, 224) pixels in [0, 1]."""
    from PIL import Image

    from adversarial.plumbing.images import from_uint8, resize_and_crop

    return from_uint8(resize_and_crop(Image.fromarray(sample_pixels(name))))
