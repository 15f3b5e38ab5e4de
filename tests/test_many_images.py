"""Many images at once: batches give the same answers as one at a time; bad files are skipped."""

import csv
import functools
import shutil

import pytest
import torch
from conftest import LITE0, run_script
from PIL import Image
from skimage import data

from utils.attacks import PGD, TutorialSGD
from utils.images import load_image_tensor
from utils.labels import label
from utils.models import load_model, predict

GOLDFISH = 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory, corgi):
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(corgi, folder / "corgi.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def photos(folder):
    return [folder / name for name in ("chelsea.jpg", "coffee.png", "corgi.png")]


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


def test_batch_predictions_equal_one_at_a_time(lite0, photos):
    x = torch.cat([load_image_tensor(p) for p in photos])
    batched = predict(lite0, x)
    single = torch.cat([predict(lite0, x[i : i + 1]) for i in range(len(x))])
    assert torch.equal(batched.argmax(1), single.argmax(1))
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)


@pytest.mark.parametrize("attack", [TutorialSGD, functools.partial(PGD, seed=0)])
def test_batch_attack_equals_one_at_a_time(lite0, photos, attack):
    x = torch.cat([load_image_tensor(p) for p in photos])
    target = torch.full((len(x),), GOLDFISH)
    batched = attack(lite0, 2 / 255, steps=30)(x, target)
    for i in range(len(x)):
        alone = attack(lite0, 2 / 255, steps=30)(x[i : i + 1], target[i : i + 1])
        assert batched.success[i] == alone.success[0]
        assert batched.steps[i] == alone.steps[0]
        assert batched.probabilities[i].argmax() == alone.probabilities[0].argmax()
    assert batched.success.all()


def test_step_2_folder_lists_every_image_and_reports_the_bad_file(folder, photos):
    result = run_script("step_2_pretrained.py", folder, *LITE0, "--batch-size", "2")
    assert result.returncode != 0  # one file could not be read
    assert f"error: {folder / 'notes.txt'}: not an image" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(photos)
    for line, path in zip(lines, photos, strict=True):
        assert line.startswith(str(path))
    assert lines[2].endswith("Pembroke, Pembroke Welsh corgi")
    assert lines[1].endswith("espresso")


def test_step_5_folder_writes_one_output_per_image_and_a_summary(folder, photos, tmp_path):
    result = run_script(
        "step_5_perturb.py", folder, *LITE0, "--batch-size", "2", "--output-dir", tmp_path
    )
    assert result.returncode == 1  # the text file is not an image: not every input succeeded
    assert f"error: {folder / 'notes.txt'}: not an image" in result.stderr
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = {row["image"]: row for row in csv.DictReader(f)}
    assert set(rows) == {str(p) for p in [*photos, folder / "notes.txt"]}
    assert rows[str(folder / "notes.txt")]["success"] == "no"
    for path in photos:
        row = rows[str(path)]
        assert row["success"] == "yes", row
        assert row["final"] == label(GOLDFISH)
        assert int(row["linf_levels"]) <= 2
        assert 0 < int(row["steps"]) <= 30
        for suffix in ("adversarial.png", "adversarial_r.npy", "comparison.png"):
            assert (tmp_path / f"{path.stem}_{suffix}").exists()
        reloaded = predict(
            load_model("efficientnet_lite0"),
            load_image_tensor(tmp_path / f"{path.stem}_adversarial.png"),
        )
        assert reloaded.argmax().item() == GOLDFISH
    assert str(folder / "corgi.png") in result.stdout  # the table is printed too
