"""Shared fixtures: sample photos, the tutorial's reference data, a seeded random ResNet18,
and two ways to run a numbered script: in-process (fast) and as a learner would (subprocess)."""

from adversarial.plumbing.script import run

import contextlib
import importlib.util
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from PIL import Image

from adversarial.plumbing.samples import sample_pixels

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT.parent / "shared" / "tutorial"  # reference data, read in place, never copied
LITE0 = ["--model", "efficientnet_lite0"]
SAMPLES = ("coffee", "chelsea", "astronaut", "rocket")


@pytest.fixture(autouse=True, scope="session")
def empty_torch_cache(tmp_path_factory):
    """No cached ResNet18 weights, whatever this machine's cache holds: the tests see the
    models an offline newcomer sees, and never load real ResNet18 weights."""
    home = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch_home"))
    yield
    if home is None:
        del os.environ["TORCH_HOME"]
    else:
        os.environ["TORCH_HOME"] = home


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """scikit-image's sample photos, saved as PNG files at run time: name -> path."""
    folder = tmp_path_factory.mktemp("photos")
    for name in SAMPLES:
        Image.fromarray(sample_pixels(name)).save(folder / f"{name}.png")
    return {name: folder / f"{name}.png" for name in SAMPLES}


@pytest.fixture(scope="session")
def coffee(photos):
    return photos["coffee"]


@pytest.fixture
def uninstalled(monkeypatch):
    """hide(names): the import system finds no such package, as if it were not installed
    (the models loaded so far are forgotten, before and after)."""
    from adversarial.models import load_model

    find_spec = importlib.util.find_spec

    def hide(names):
        def find_all_but(name, package=None):
            return None if name in names else find_spec(name, package)

        monkeypatch.setattr(importlib.util, "find_spec", find_all_but)

    load_model.cache_clear()
    yield hide
    load_model.cache_clear()


def tutorial_file(name):
    path = TUTORIAL / name
    if not path.exists():
        pytest.skip(f"the tutorial's reference data is missing: {path}")
    return path


@pytest.fixture(scope="module")
def data():
    """Steps 7 and 8's digits, split with seed 0: (x_train, y_train, x_test, y_test)."""
    from adversarial import digits

    return digits.load_data(0)


@pytest.fixture(scope="module")
def one_thread():
    """As steps 7 and 8 do: tiny batches run much faster on one thread than on two busy
    ones. A module that trains digits models uses it for all its tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_resnet18(tmp_path_factory):
    """A seeded random ResNet18 state_dict file: tests the mechanics, not the predictions."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18_random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


class NoGradient(torch.autograd.Function):
    """Identity forward; any backward pass raises: the attack must never ask for one."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("the attack read a gradient")


def call(module, *args):
    """Run a script's main() in this process, as `python SCRIPT ARGS` would: its exit code,
    stdout and stderr. Much faster than a subprocess (models stay loaded between calls)."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()  # steps 7 and 8 change it for their process
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(module.main, [str(arg) for arg in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            torch.set_num_threads(threads)
    return Result(code, out.getvalue(), err.getvalue())


def run_script(script, *args, cwd=ROOT, env=None):
    """Run a numbered script as a learner would, in a new Python process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Result(result.returncode, result.stdout, result.stderr)


def succeeded(result):
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout.splitlines()


def assert_clean_error(result, *fragments):
    """A bad input: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]  # one format, the parser's included
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def files_in(folder):
    """Every file below `folder` (none if it does not exist)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def decompression_bomb(path, side=20000):
    """A valid 1-bit PNG of side x side black pixels: ~50 kB on disk, 400 MP to decode.

    Written chunk by chunk with zlib, since Image.new("1", ...) would hold 400 MB in memory.
    """

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
    if side * side > 2 * Image.MAX_IMAGE_PIXELS:
        with pytest.raises(Image.DecompressionBombError):  # Pillow refuses to open it at all
            Image.open(path)
