"""The command-line layer of the numbered scripts: the parser, its types and shared options.

Library modules never import this one; the scripts do.
"""

import argparse
import math
import re
from pathlib import Path


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is reported on one line (no usage block), in the same
    form as every other error: `error: ...`."""

    def error(self, message):
        # argparse's own messages (a bad choice) quote values whole: shortened as ours are.
        message = re.sub(r"'([^']{41,})'", lambda match: repr(shown(match[1])), message)
        self.exit(2, f"error: {message}\n")

    def add_argument(self, *args, **kwargs):
        """An option whose help does not say its default gets it added: "(default 2/255)"."""
        action = super().add_argument(*args, **kwargs)
        unset = (None, False, (), argparse.SUPPRESS)
        named = action.option_strings and action.help and action.default not in unset
        if named and "default" not in action.help:
            action.help += f" (default {default_text(action.default)})"
        return action


def default_text(value):
    """A default as a learner would type it: 2/255 for an epsilon, a,b for a list."""
    from adversarial.plumbing.tables import epsilon_text

    if isinstance(value, float):
        return epsilon_text(value)
    if isinstance(value, (tuple, list)):
        return ",".join(map(default_text, value))
    return str(value)


def add_model_arguments(parser, device=True, ensemble=False):
    """--model (with ensemble=True: a comma-separated list), --weights, --device."""
    from adversarial.models import MODELS  # here: step 1 imports this module and needs no torch

    help = (
        "classifier to fool (default: auto, resnet18 as in the tutorial when its weights "
        "are cached, given or downloadable, else efficientnet_lite0, which works offline)"
    )
    if ensemble:
        parser.add_argument(
            "--model",
            default=("auto",),
            type=list_of(one_of(MODELS), keep_order=True),
            help=f"{help}; several, comma-separated, attack them all at once (an ensemble)",
        )
    else:
        parser.add_argument("--model", default="auto", choices=MODELS, help=help)
    parser.add_argument(
        "--weights",
        type=Path,
        help="local state_dict file for ResNet18 (its weights saved for offline use)",
    )
    if device:
        add_device_argument(parser)


def add_device_argument(parser):
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to run (default: auto, the GPU when there is one)",
    )


def add_output_dir(parser, default="outputs", what="the results"):
    parser.add_argument("--output-dir", type=Path, default=Path(default), help=f"for {what}")


def add_seed(parser, what):
    """--seed, the same range in every step; `what`: what it draws."""
    parser.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help=what)


def add_digits_arguments(parser):
    """The options steps 7 and 8 share: the bound, the budget, the seed, the evaluation."""
    parser.add_argument(
        "--epsilon", type=pixel_amount, default=0.2, help="L-inf bound for training (default 0.2)"
    )
    parser.add_argument("--epochs", type=int_in(1, 1000), default=15, help="1..1000 (default 15)")
    parser.add_argument(
        "--seed",
        type=int_in(0, 2**32 - 1),
        default=0,
        help="split, weights, batches, random starts (default 0)",
    )
    parser.add_argument(
        "--eval-epsilons",
        type=list_of(pixel_amount),
        default="0.05,0.1,0.15,0.2,0.25,0.3",
        metavar="LIST",
        help="bounds to attack the trained models with (default 0.05,0.1,...,0.3)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs"), help="for the plot and the weights"
    )


def shown(text, width=20):
    """An option's value as an error line echoes it: at most `width` characters, then '...'
    (a 5000-digit number stays one short line). Every number type here echoes through it."""
    return text if len(text) <= width else f"{text[:width]}..."


def int_in(low, high):
    """argparse type: an integer from low to high (however many digits it is given with)."""

    def parse(text):
        digits = text.strip().lstrip("+-").replace("_", "")
        if digits.isascii() and digits.isdecimal() and len(digits.lstrip("0")) > 30:
            value = math.inf  # Python refuses to read integers of over 4300 digits
        else:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{shown(text)!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {shown(text)}")
        return value

    return parse


jpeg_quality = int_in(1, 100)


def _number(text):
    """0.5, 1/2 or 8/255 as a float (inf or NaN too: each type says what it admits)."""
    numerator, _, denominator = text.partition("/")
    try:  # float() first: Fraction("1e1000000000") would compute the power of ten exactly
        return float(numerator) / float(denominator or 1)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"{shown(text)!r} is not a number like 8/255, 0.5 or 1/2"
        ) from None


def amount(text):
    """argparse type: a finite number written as 0.5, 1/2 or 8/255, the forms every amount
    of pixels, radius, noise level or step size accepts."""
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {shown(text)}")
    return value


def positive_float(text):
    """argparse type: an amount (0.5, 1/2, 8/255) > 0."""
    value = amount(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {shown(text)}")
    return value


def number_in(low, high):
    """argparse type: an amount (0.5, 1/2, 8/255) above low, at most high."""

    def parse(text):
        value = _number(text)
        if not low < value <= high:  # NaN is neither
            raise argparse.ArgumentTypeError(
                f"must be a number above {low:g}, at most {high:g}, got {shown(text)}"
            )
        return value

    return parse


def degrees(text):
    """argparse type: an angle in degrees, a number from -180 to 180."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)!r} is not a number") from None
    if not -180 <= value <= 180:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be from -180 to 180 degrees, got {shown(text)}")
    return value


def share(text):
    """argparse type: a share of a whole, a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, got {shown(text)}")
    return value


def pixel_amount(text):
    """argparse type for epsilon: '2/255' or '0.0078', a change of pixels in [1/255, 1].

    Below one 8-bit level the saved image could not change at all.
    """
    value = _number(text)
    if not 1 / 255 - 1e-9 <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"must be from 1/255 (one 8-bit level) to 1 (pixel units), got {shown(text)}"
        )
    return value


def list_of(item_type, keep_order=False):
    """argparse type for "a,b,c": each item parsed by item_type; without repeats, sorted
    (or in the order given)."""

    def parse(text):
        try:
            items = [item_type(item.strip()) for item in text.split(",")]
        except (argparse.ArgumentTypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(f"{shown(text)!r}: {err}") from None
        return tuple(dict.fromkeys(items)) if keep_order else tuple(sorted(set(items)))

    return parse


def layer_sizes(text):
    """argparse type for "32,32": the sizes of a network's layers, repeats kept, 1 to 512."""
    try:
        sizes = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)!r} is not a list like 32,32") from None
    if not all(1 <= size <= 512 for size in sizes):
        raise argparse.ArgumentTypeError(f"{shown(text)!r}: each size must be from 1 to 512")
    return sizes


def one_of(choices):
    """argparse type for one item of `choices` (for lists, where choices= cannot serve)."""

    def parse(text):
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{shown(text)!r} is not one of {', '.join(choices)}")
        return text

    return parse
