"""The tutorial's perturbation files: r in the model's normalised space, shape (1, 3, 224, 224)."""

from pathlib import Path

import numpy as np
import torch

from utils.errors import UserError
from utils.images import SIZE

SHAPES = ((1, 3, SIZE, SIZE), (3, SIZE, SIZE))


def load_perturbation(path):
    """Read r from an .npy file, checked: float, finite, shape (1|-, 3, 224, 224)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such perturbation file")
    try:  # never allow_pickle: an .npy file can carry arbitrary code
        r = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        if "allow_pickle" in str(err):  # numpy's advice to load unsafely: not for a learner
            err = "no .npy header, or pickled objects, which are never loaded"
        raise UserError(f"{path}: not a NumPy .npy array ({err})") from None
    if not isinstance(r, np.ndarray):
        raise UserError(f"{path}: holds an .npz archive, not a single .npy array")
    if not np.issubdtype(r.dtype, np.floating):
        raise UserError(f"{path}: perturbation must be a float array, got dtype {r.dtype}")
    if r.shape not in SHAPES:
        raise UserError(f"{path}: perturbation shape is {r.shape}, expected (1, 3, 224, 224)")
    if not np.isfinite(r).all():
        raise UserError(f"{path}: perturbation holds NaN or infinite values")
    return torch.from_numpy(r.astype(np.float32)).reshape(SHAPES[0])


def perturbation_writer(r):
    """A write(tmp) function: r as float32 (1, 3, 224, 224), the tutorial's .npy format."""
    r = r.detach().cpu().numpy().astype(np.float32).reshape(SHAPES[0])

    def write(tmp):
        with open(tmp, "wb") as file:  # a file object: np.save would append .npy to a name
            np.save(file, r, allow_pickle=False)

    return write
