"""Writing files safely: check every output before any work, then write all of them or none."""

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from adversarial.plumbing.errors import UserError

# Formats whose files read back exactly as written, so what is classified is what is saved.
LOSSLESS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM"}
PHOTO = {**LOSSLESS, ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
# Short, so a long output name still leaves room for its temporary beside it.
TEMPORARY_PREFIX = ".tmp-"


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

    A missing folder is fine when its nearest existing parent takes a file (tried for
    real: root may "have access" to /proc and still fail to write there); it is created
    only when the first file is written, so a run that fails leaves no empty folder.
    """
    directory = Path(directory)
    existing = directory
    try:
        while not existing.exists() and existing != existing.parent:
            if existing.is_symlink():
                raise UserError(f"cannot write to folder {directory}: {existing} is a broken link")
            existing = existing.parent
    except OSError as err:  # e.g. a name longer than the system allows
        raise UserError(f"cannot write to folder {directory}: {err.strerror or err}") from None
    if not existing.is_dir():
        raise UserError(f"cannot write to folder {directory}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=TEMPORARY_PREFIX):
            pass
    except OSError as err:
        reason = "permission denied" if err.errno == errno.EACCES else err.strerror or err
        raise UserError(f"cannot write to folder {directory}: {reason}") from None


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
    them all into place. If anything fails (Ctrl-C too), no new file is left, the files
    they were to replace are as they were, and no temporary or new folder remains. A file
    that cannot be moved aside (immutable, say) stops the run before anything is replaced."""
    made, temporaries, kept, moved = [], {}, {}, []
    path = None
    try:
        for path, write in writers.items():
            path = Path(path)
            made += _make_folders(path.parent)
            temporaries[path] = _temporary_beside(path)
            write(temporaries[path])
            os.chmod(temporaries[path], 0o666 & ~_umask())  # mkstemp's files are private
        for path in temporaries:
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a folder")
        for path, tmp in temporaries.items():
            if path.exists():  # the old file is kept aside until every new one is in place
                _move_aside(path, kept)
            os.replace(tmp, path)
            moved.append(path)
    except BaseException as err:
        stranded = _roll_back(moved, kept, temporaries, made)
        if isinstance(err, (OSError, RuntimeError)):  # torch.save: a full disk is RuntimeError
            where = "".join(f"; the previous {p} is kept as {old}" for p, old in stranded)
            raise UserError(f"cannot write {path}: {_reason(err)}{where}") from None
        raise
    for old in kept.values():
        with contextlib.suppress(OSError):
            os.remove(old)


def _move_aside(path, kept):
    """Move `path` to a new temporary beside it, recorded in `kept` once it is there."""
    aside = _temporary_beside(path)
    try:
        os.replace(path, aside)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(aside)  # still the empty placeholder: the move did not happen
        raise
    kept[path] = aside


def _roll_back(moved, kept, temporaries, made):
    """Undo write_all: the new files out, the old ones back, temporaries and new folders
    gone. Each step is tried on its own; returns the (path, aside) of old files that could
    not be put back, to be named (never a traceback from here)."""
    stranded = []
    for new_file in moved:
        if new_file not in kept:
            with contextlib.suppress(OSError):
                new_file.unlink(missing_ok=True)
    for original, old in kept.items():
        try:
            os.replace(old, original)  # over the new file, if it was moved in
        except OSError:
            stranded.append((original, old))
    for tmp in temporaries.values():
        with contextlib.suppress(OSError):
            os.remove(tmp)
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if still empty
    return stranded


def _temporary_beside(path):
    """A new empty file in path's folder, hidden, with path's suffix (which some writers
    need: torch.save refuses a name without one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX, suffix=path.suffix)
    os.close(fd)
    return tmp


def _make_folders(folder):
    """Create `folder` and its missing parents; return the ones created, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir()
    return list(reversed(missing))


def _reason(err):
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return (text.strip().splitlines() or [type(err).__name__])[0][:120]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
