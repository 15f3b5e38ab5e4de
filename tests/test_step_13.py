"""Step 13: the minimal examples before and after saving, the scoreboard judged on the saved
PNGs (sizes measured on them), the sweep and the digits tables on tiny settings, bad input."""

import csv

import numpy as np
import pytest
import torch
from conftest import LITE0, assert_clean_error, call, run_script, succeeded
from PIL import Image

import step_1_sample_image
import step_13_minimal
from adversarial import digits
from adversarial.models import load_model, predict
from adversarial.plumbing.images import load_image_tensor

TINY = ["--steps", "2", "--queries", "5", "--cw-searches", "1", "--cw-steps", "3"]
ATTACKS = ["tutorial SGD", "FGSM", "PGD", "Square", "DeepFool L2", "DeepFool L-inf", "CW-L2"]
ATTACKS += ["greedy pixels (L0)"]


@pytest.fixture(scope="module")
def scoreboard_run(coffee, tmp_path_factory):
    folder = tmp_path_factory.mktemp("minimal")
    args = [coffee, "--untargeted", *TINY, "--max-pixels", "30", *LITE0, "--output-dir", folder]
    return succeeded(call(step_13_minimal, *args)), folder


def test_the_rounding_table_shows_each_minimal_attack_as_floats_and_as_png(scoreboard_run):
    lines, _ = scoreboard_run
    assert lines[0] == "Class: espresso"
    start = lines.index("The minimal attacks as the papers run them (on floats), and their PNGs:")
    assert lines[start + 1].split() == [
        "attack", "L2", "L-inf", "L0", "rho", "fools", "its", "PNG", "fools", "PNG's", "L0"
    ]  # fmt: skip
    rows = [line.split()[:2] for line in lines[start + 2 : start + 5]]
    assert [row[0] for row in rows] == ["DeepFool", "DeepFool", "CW-L2"]


def test_the_scoreboard_is_judged_and_measured_on_the_saved_pngs(scoreboard_run, coffee):
    _, folder = scoreboard_run
    with open(folder / "scoreboard.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    with Image.open(folder / "scoreboard.png") as picture:  # the scoreboard drawn beside it
        assert picture.format == "PNG"
    assert [row["attack"] for row in rows] == ATTACKS
    model = load_model("efficientnet_lite0")
    x = load_image_tensor(coffee)
    espresso = int(predict(model, x).argmax())
    for row in rows:
        saved = load_image_tensor(folder / f"{step_13_minimal.slug(row['attack'])}.png")
        # Independently, in 8-bit levels from the file: the sizes the table shows.
        r = (saved - x).numpy()[0] * 255
        assert float(row["L2"]) == pytest.approx(np.sqrt((r**2).sum()) / 255, abs=1e-3)
        assert row["L-inf"] == f"{np.abs(r).max():.0f}/255"
        assert int(row["L0"]) == int((np.abs(r) > 0.5).any(0).sum())
        fooled = int(predict(model, saved).argmax()) != espresso
        assert row["fools"] == ("yes" if fooled else "no"), row["attack"]
        assert {row[f"{name}"] for name in ("lite1", "lite2", "squeezenet1_1")} <= {"yes", "no"}
    budget = {row["attack"]: row for row in rows if row["asked"] == "within 2/255"}
    assert set(budget) == {"tutorial SGD", "FGSM", "PGD", "Square"}
    assert all(row["L-inf"] in ("0/255", "1/255", "2/255") for row in budget.values())
    assert budget["Square"]["queries"] == "5" and budget["FGSM"]["gradients"] == "1"


def test_the_sweep_counts_photos_already_wrong_and_measures_the_rest(tmp_path):
    # Lite0 gets imagenet_01 right and takes imagenet_03 (a buckeye) for a custard apple.
    args = ["--sweep", "--photos", "imagenet_01,imagenet_03", "--output-dir", tmp_path]
    lines = succeeded(call(step_13_minimal, *args))
    lite0 = next(line.split() for line in lines if line.startswith("efficientnet_lite0"))
    assert lite0[1:4] == ["2", "1", "1"]  # photos, already wrong, fooled
    with open(tmp_path / "minimal_l2.csv", newline="") as file:
        rows = {(row["model"], row["photo"]): row for row in csv.DictReader(file)}
    assert rows[("efficientnet_lite0", "imagenet_03")]["already wrong"] == "yes"
    assert rows[("efficientnet_lite0", "imagenet_03")]["L2"] == "0.0000"
    with Image.open(tmp_path / "minimal_l2.png") as picture:
        assert picture.format == "PNG"
    assert float(rows[("efficientnet_lite0", "imagenet_01")]["L2"]) == pytest.approx(
        float(lite0[4]), abs=1e-3
    )


def test_digits_models_get_both_tables(tmp_path):
    torch.manual_seed(0)
    files = []
    for name in ("standard", "other"):
        path = tmp_path / f"digits_{name}.pth"
        torch.save(digits.build_model().state_dict(), path)
        files.append(path)
    out = ["--output-dir", tmp_path / "out"]
    lines = succeeded(call(step_13_minimal, "--models", *files, *TINY, *out))
    assert lines[0].startswith("Smallest L2 found")
    with Image.open(tmp_path / "out" / "minimal_digits.png") as picture:
        assert picture.format == "PNG"
    assert [line.split()[0] for line in lines[2:4]] == ["standard", "other"]
    linf = lines.index("Smallest L-inf found (DeepFool L-inf), as saved:")
    assert [line.split()[:2] for line in lines[linf + 2 : linf + 4]] == [
        ["standard", "360"],
        ["other", "360"],
    ]


def test_a_target_the_model_already_sees_is_refused(coffee, tmp_path):
    result = call(step_13_minimal, coffee, "--target", "espresso", *LITE0, "--output-dir", tmp_path)
    assert_clean_error(result, "already espresso", "pick another --target")
    assert not list(tmp_path.iterdir())


def test_a_labelled_photo_the_model_gets_wrong_is_refused(tmp_path):
    photo = tmp_path / "buckeye.png"
    succeeded(call(step_1_sample_image, "--name", "imagenet_03", "--output", photo))
    result = call(step_13_minimal, photo, "--untargeted", *LITE0, "--output-dir", tmp_path / "o")
    assert_clean_error(result, "buckeye", "the model sees custard apple")
    assert not (tmp_path / "o").exists()


def test_one_mode_at_a_time_as_a_learner_runs_it():
    assert_clean_error(run_script("step_13_minimal.py"), "give one image, or --sweep")
