"""Writing files safely: check every output before any work, then write all of them or none."""

import os
import stat
import tempfile
from pathlib import Path

from adversarial.plumbing.errors import UserError

# Formats whose files read back exactly as written, so what is classified is what is saved.
LOSSLESS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM"}
PHOTO = {**LOSSLESS, ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def check_input_file(path, what="file"):
    """Fail unless `path` is a regular, readable file: not a folder, FIFO or device (which
    could hang a reader), nor a name the system refuses. `what` names it in messages."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read this {what} ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: is not a regular file (a pipe or a device?)")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: permission denied")


def check_writable_dir(directory):
    """Fail before any work if files cannot be written in `directory`.

    A missing folder is fine when its nearest existing parent is writable: it is created
    only when the first file is written, so a run that fails leaves no empty folder.
    """
    directory = Path(directory)
    existing = directory
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError as err:  # e.g. a name longer than the system allows
        raise UserError(f"cannot write to folder {directory}: {err.strerror or err}") from None
    if not existing.is_dir():
        raise UserError(f"cannot write to folder {directory}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to folder {directory}: permission denied")


def check_outputs(outputs, inputs):
    """Fail before any work if an output would overwrite an input, another output, or a
    folder, or cannot be written. `inputs` are files given (or found in folders given)."""
    protected = {Path(path).resolve(): path for path in inputs if path is not None}
    seen = {}
    for output in map(Path, outputs):
        try:
            is_folder = output.is_dir()
        except OSError as err:  # e.g. a name longer than the system allows
            raise UserError(f"{output}: cannot be written ({err.strerror or err})") from None
        resolved = output.resolve()
        if resolved in protected:
            source = protected[resolved]
            raise UserError(
                f"{source}: is an input and would be overwritten; choose another output"
            )
        if resolved in seen:
            raise UserError(f"{output}: would be written twice in one run")
        seen[resolved] = output
        if is_folder:
            raise UserError(f"{output}: is a folder, so this output cannot be written there")
        check_writable_dir(output.parent)


def check_suffix(path, suffixes, what):
    """Fail before any work unless `path` ends in one of `suffixes` (any case)."""
    if Path(path).suffix.lower() not in suffixes:
        raise UserError(f"{path}: save {what} as {' or '.join(suffixes)}")


def check_image_output(path, formats=LOSSLESS):
    """Fail before any work if `path` cannot be written as an image; return its format.

    By default only lossless formats: the file must hold exactly the pixels that were judged.
    """
    check_suffix(path, list(formats), "the image")
    check_writable_dir(Path(path).parent)
    return formats[Path(path).suffix.lower()]


def write_atomically(path, write):
    """Call write(tmp_path), then move the finished file into place: no partial outputs."""
    write_all({path: write})


def write_all(writers):
    """{path: write(tmp_path)}: write every file beside its destination first, then move
    them all into place, so a failure leaves none of them (and no temporary) behind."""
    done, moved = {}, []
    path = None
    try:
        for path, write in writers.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
            os.close(fd)
            done[path] = tmp
            write(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; these are ordinary
        for path in done:
            if path.is_dir():
                raise IsADirectoryError(21, "is a folder")
        for path, tmp in done.items():
            os.replace(tmp, path)
            moved.append(path)
    except OSError as err:
        for path_moved in moved:
            path_moved.unlink()
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        for tmp in done.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
