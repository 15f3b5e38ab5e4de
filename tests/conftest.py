"""Shared fixtures: the tutorial's reference data, a seeded random ResNet18, a script runner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT.parent / "shared" / "tutorial"  # reference data, read in place, never copied
LITE0 = ["--model", "efficientnet_lite0"]


@pytest.fixture(scope="session")
def corgi():
    path = TUTORIAL / "corgi.png"
    if not path.exists():
        pytest.skip(f"reference data missing: {path}")
    return path


@pytest.fixture(scope="session")
def tutorial_r():
    return TUTORIAL / "adversarial_r.npy"


@pytest.fixture(scope="session")
def random_resnet18(tmp_path_factory):
    """A seeded random ResNet18 state_dict file: tests the mechanics, not the predictions."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18_random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def run_script(script, *args, cwd=ROOT, env=None, check=False):
    """Run a numbered script as a learner would; return the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed:\n{result.stdout}\n{result.stderr}")
    return result


def assert_clean_error(result, *fragments):
    """A bad input: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
