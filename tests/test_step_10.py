"""Step 10: the Square Attack on one image (judged on the saved PNG), the sweep's table and
files, Square beside PGD on digits models, and bad arguments."""

import contextlib
import csv
import io

import pytest
import torch
from conftest import LITE0, assert_clean_error, call, run_script, succeeded
from PIL import Image
from torch import nn

import step_1_sample_image
import step_10_query
from adversarial import digits
from adversarial.models import load_model, predict
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import label
from adversarial.plumbing.samples import sample_photo, true_class
from adversarial.query_budget import compare_on_digits


def test_one_image_is_fooled_on_the_saved_png_within_epsilon(coffee, tmp_path):
    lines = succeeded(call(step_10_query, coffee, "--epsilon", "8/255", "--output-dir", tmp_path))
    queries = int(lines[0].split()[2])
    assert lines[0] == f"Fooled after {queries} queries (max change 8/255 per pixel)"
    assert 2 <= queries <= 1000
    assert lines[1:] == ["Old prediction: espresso", f"New prediction: {lines[2][16:]}"]
    # Independently: the PNG as saved, classified again, is not an espresso, within 8 levels.
    model = load_model("efficientnet_lite0")
    saved = load_image_tensor(tmp_path / "adversarial.png")
    clean = load_image_tensor(coffee)
    seen = predict(model, saved).argmax(1)
    assert label(seen[0]) != "espresso" and label(seen[0]) == lines[2][16:]
    assert ((saved - clean).abs().max() * 255).round() <= 8
    with Image.open(tmp_path / "adversarial.png") as png:
        assert png.text["made on"] == "efficientnet_lite0" and png.text["target"] == ""
    assert {p.name for p in tmp_path.iterdir()} == {
        "adversarial.png",
        "adversarial_r.npy",
        "comparison.png",
    }


def test_a_budget_too_small_is_one_line_and_writes_nothing(coffee, tmp_path):
    args = ["--queries", "3", *LITE0, "--output-dir", tmp_path / "out"]
    result = call(step_10_query, coffee, *args)
    assert_clean_error(result, "no adversarial image within 3 queries", "best probability")
    assert not (tmp_path / "out").exists()


def test_a_labelled_photo_the_model_already_gets_wrong_is_not_attacked(tmp_path):
    # Lite0 takes imagenet_03, a buckeye, for a custard apple: untargeted, nothing to do.
    photo = tmp_path / "buckeye.png"
    succeeded(call(step_1_sample_image, "--name", "imagenet_03", "--output", photo))
    result = call(step_10_query, photo, "--model", "efficientnet_lite0", "--output-dir", tmp_path)
    assert_clean_error(result, "buckeye", "already sees custard apple", "nothing to attack")
    assert not (tmp_path / "adversarial.png").exists()


def test_the_sweep_on_a_tiny_setting(tmp_path):
    # Lite0 gets imagenet_01 right and takes imagenet_03 (a buckeye) for a custard apple.
    photos = ["imagenet_01", "imagenet_03"]
    args = ["--photos", ",".join(photos), "--epsilons", "8/255", "--queries", "30"]
    lines = succeeded(call(step_10_query, "--sweep", *args, "--output-dir", tmp_path))
    assert lines[1] == "Photos attacked (the model classifies them right): 1 of 2"
    with open(tmp_path / "square.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    x = torch.cat([sample_photo(name) for name in photos])
    right = predict(load_model("efficientnet_lite0"), x).argmax(1).tolist()
    truth = [true_class(name) for name in photos]
    assert [row["judged"] == "True" for row in rows] == [
        r == t for r, t in zip(right, truth, strict=True)
    ]
    attacked = rows[0]
    queries = int(attacked["queries"])
    assert 1 <= queries <= 30 and (attacked["fooled"] == "True" or queries == 30)
    fooled = "100%" if attacked["fooled"] == "True" else "0%"
    assert lines[3].split()[:3] == ["8/255", "8", fooled]
    assert (tmp_path / "square.png").stat().st_size > 0


def test_square_beside_pgd_on_digits_models(tmp_path):
    files = []
    for seed in (0, 1):  # untrained models: the mechanics, not the robustness
        torch.manual_seed(seed)
        files.append(tmp_path / f"digits_model{seed}.pth")
        torch.save(digits.build_model(0.3, 0.4).state_dict(), files[-1])
    args = ["--models", *files, "--digits-epsilons", "0.3", "--queries", "10", "--pgd-steps", "2"]
    lines = succeeded(call(step_10_query, *args, "--pgd-restarts", "2"))
    assert lines[:2] == [
        "PGD: 2 steps of epsilon/4; Square: 10 queries, p_init 0.8",
        "Accuracy on the 360 held-out digits under attack:",
    ]
    row = lines[3].split()
    columns = "epsilon model0 vs PGD x2 model0 vs Square model1 vs PGD x2 model1 vs Square"
    assert " ".join(lines[2].split()) == columns
    _, _, x_test, y_test = digits.load_data(0)
    for column, path in ((1, files[0]), (3, files[1])):
        model = digits.build_model()
        model.load_state_dict(torch.load(path, weights_only=True))
        clean = (model(x_test).argmax(1) == y_test).float().mean().item()
        for attacked in (row[column], row[column + 1]):
            assert float(attacked.rstrip("%")) / 100 <= clean + 1e-9  # no attack helps


class WrongAtClean(nn.Module):
    """The class of the nearest of the given digits, except at a digit itself: the next
    class. No gradient (PGD stays at its random start, where the model is right)."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x.flatten(1), y

    def forward(self, images):
        distances = torch.cdist(images.flatten(1), self.x)
        nearest = distances.argmin(1)
        at_a_digit = distances.amin(1) == 0
        label = torch.where(at_a_digit, (self.y[nearest] + 1) % 10, self.y[nearest])
        return nn.functional.one_hot(label, 10).float()


def test_a_digit_the_model_gets_wrong_is_lost_to_pgd_as_to_square():
    _, _, x_test, y_test = digits.load_data(0)
    x, y = x_test[:20], y_test[:20]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        compare_on_digits(
            {"m": WrongAtClean(x, y)},
            x,
            y,
            [2 / 255],
            {"steps": 2, "restarts": 1},
            {"queries": 5, "p_init": 0.8, "seed": 0},
        )
    row = out.getvalue().splitlines()[2].split()
    assert row[1:] == ["0.0%", "0.0%"]  # wrong on all 20 digits: no accuracy left


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give one image, or --sweep, or --models"),
        (["--sweep", "--models", "x.pth"], "give one image, or --sweep, or --models"),
        (["--sweep", "--p-init", "2"], "must be a share from 0 to 1"),
        (["--sweep", "--queries", "0"], "--queries"),
        (["--models", "missing.pth"], "missing.pth"),
    ],
)
def test_bad_arguments_are_one_line(args, message, tmp_path):
    assert_clean_error(call(step_10_query, *args, "--output-dir", tmp_path / "out"), message)
    assert not (tmp_path / "out").exists()


def test_the_real_command_refuses_a_targeted_run_at_its_own_class(coffee):
    result = run_script("step_10_query.py", coffee, "--target", "espresso", *LITE0)
    assert_clean_error(result, "is already espresso")
