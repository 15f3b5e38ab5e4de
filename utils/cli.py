"""Command-line plumbing shared by the numbered scripts: one-line errors, no tracebacks."""

import argparse
import os
import sys
import tempfile
from fractions import Fraction
from pathlib import Path


class UserError(Exception):
    """A problem with the learner's input: reported as one line, never as a traceback."""

    exit_code = 2


class AttackFailed(UserError):
    """The attack ran but did not find an adversarial image within its budget."""

    exit_code = 1


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is reported on one line (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def run(main):
    """Call main(); turn a UserError into one `error: ...` line on stderr and its exit code."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def add_model_arguments(parser):
    parser.add_argument(
        "--model",
        default="resnet18",
        choices=["resnet18", "efficientnet_lite0", "auto"],
        help="classifier to fool (default: resnet18, as in the tutorial; "
        "auto: resnet18 if its weights can be had, else efficientnet_lite0)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        help="local state_dict file for the model (e.g. ResNet18 weights saved for offline use)",
    )


def check_writable_dir(directory):
    """Create `directory` if needed and prove a file can be written there, before any work."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise UserError(f"cannot write to folder {directory}: {err.strerror or err}") from None


def check_not_input(output, inputs):
    """Outputs never overwrite inputs: fail before any work if `output` is one of them."""
    output = Path(output).resolve()
    for source in inputs:
        if source is not None and Path(source).resolve() == output:
            raise UserError(
                f"{source}: is an input and would be overwritten; choose another output"
            )


def write_atomically(path, write):
    """Call write(tmp_path), then move the finished file into place: no partial outputs."""
    path = Path(path)
    check_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; outputs are ordinary files
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def int_in(low, high=None):
    """argparse type: an integer from low to high (no upper limit if high is None)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            allowed = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value

    return parse


positive_int = int_in(1)
jpeg_quality = int_in(1, 100)


def positive_float(text):
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def pixel_amount(text):
    """argparse type for epsilon: '2/255' or '0.0078', a change of pixels in (0, 1]."""
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number like 2/255 or 0.008") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (pixel units), got {text}")
    return value


def list_of(item_type):
    """argparse type for "a,b,c": each item parsed by item_type; sorted, without repeats."""

    def parse(text):
        try:
            return tuple(sorted({item_type(item.strip()) for item in text.split(",")}))
        except (argparse.ArgumentTypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None

    return parse
