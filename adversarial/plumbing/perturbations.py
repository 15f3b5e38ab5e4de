"""The tutorial's perturbation files: r in the model's normalised space, shape (1, 3, 224, 224)."""

from pathlib import Path

import numpy as np
import torch

from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import check_input_file
from adversarial.plumbing.images import SIZE

SHAPES = ((1, 3, SIZE, SIZE), (3, SIZE, SIZE))


def load_perturbation(path):
    """Read r from an .npy file, checked: float, finite, shape (1|-, 3, 224, 224).

    The header is checked before the data is read, so a small file that claims a huge
    shape allocates nothing; pickled objects are never loaded (they can run code).
    """
    path = Path(path)
    check_input_file(path, "perturbation file")
    with open(path, "rb") as file:
        if file.read(4) == b"PK\x03\x04":
            raise UserError(f"{path}: holds an .npz archive, not a single .npy array")
        file.seek(0)
        try:
            shape, dtype = _read_header(file)
        except Exception as err:  # NumPy's header parser raises many types for a bad header
            raise UserError(f"{path}: not a NumPy .npy array ({_first_line(err)})") from None
        if dtype.hasobject:
            raise UserError(f"{path}: not a NumPy .npy array of numbers (pickled objects)")
        if not np.issubdtype(dtype, np.floating):
            raise UserError(f"{path}: perturbation must be a float array, got dtype {dtype}")
        if shape not in SHAPES:
            raise UserError(f"{path}: perturbation shape is {shape}, expected (1, 3, 224, 224)")
        file.seek(0)
        try:
            r = np.load(file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise UserError(f"{path}: not a NumPy .npy array ({_first_line(err)})") from None
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: refused below
        r = r.astype(np.float32)
    if not np.isfinite(r).all():
        raise UserError(f"{path}: perturbation holds NaN or infinite values (after float32)")
    return torch.from_numpy(r).reshape(SHAPES[0])


def _read_header(file):
    """(shape, dtype) from an .npy header, without reading the data."""
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(file)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(file)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return shape, dtype


def perturbation_writer(r):
    """A write(tmp) function: r as float32 (1, 3, 224, 224), the tutorial's .npy format."""
    r = r.detach().cpu().numpy().astype(np.float32).reshape(SHAPES[0])

    def write(tmp):
        with open(tmp, "wb") as file:  # a file object: np.save would append .npy to a name
            np.save(file, r, allow_pickle=False)

    return write


def _first_line(err):
    """NumPy's messages about a bad header run over several lines: the first says it."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
