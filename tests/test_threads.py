"""How PyTorch's threads wait, set where every script starts, unless the learner set it."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SHOW = (
    "from adversarial.plumbing.script import run\n"
    "import os, sys\n"
    "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))\n"
    "print('torch' in sys.modules)"
)


def started_with(**settings):
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | settings
    result = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def test_a_waiting_thread_sleeps_by_default_and_before_torch_loads():
    assert started_with() == ["PASSIVE", "None", "False"]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, ["ACTIVE", "None"]),
        ({"GOMP_SPINCOUNT": "300000"}, ["None", "300000"]),  # the old spin: nothing added
    ],
)
def test_the_learners_own_setting_wins(setting, expected):
    assert started_with(**setting)[:2] == expected
