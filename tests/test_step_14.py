"""Step 14: HopSkipJump on one image (judged on the saved PNG, its distances and queries as
printed), targeted from a labelled photo, the sweep's files, the digits table, bad input."""

import csv

import pytest
import torch
from conftest import LITE0, assert_clean_error, call, succeeded
from PIL import Image

import step_14_decision
from adversarial import digits
from adversarial.models import load_model, predict
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import label


def saved_and_clean(coffee, folder):
    return load_image_tensor(folder / "adversarial.png"), load_image_tensor(coffee)


def test_one_image_through_labels_only_is_judged_on_the_saved_png(coffee, tmp_path):
    lines = succeeded(
        call(step_14_decision, coffee, "--queries", "12", *LITE0, "--output-dir", tmp_path)
    )
    saved, clean = saved_and_clean(coffee, tmp_path)
    seen = predict(load_model("efficientnet_lite0"), saved).argmax(1)
    assert label(seen[0]) != "espresso"
    assert lines[-2:] == ["Old prediction: espresso", f"New prediction: {label(seen[0])}"]
    # The queries add up, and the distances printed are the saved file's.
    kinds = lines[0].split("(")[1].rstrip(")").split(", ")
    assert lines[0].startswith("Queries: 12 (")
    assert sum(int(kind.rsplit(" ", 1)[1]) for kind in kinds) == 12
    l2 = (saved - clean).norm().item()
    linf = round((saved - clean).abs().max().item() * 255)
    assert lines[1] == f"L2 {l2:.3f} in pixels of [0, 1] ({l2 * 255:.1f} in 8-bit levels)"
    assert lines[2].endswith(f"({linf}/255)")
    with Image.open(tmp_path / "adversarial.png") as png:
        assert png.text["made on"] == "efficientnet_lite0" and png.text["target"] == ""
    names = {"adversarial.png", "adversarial_r.npy", "comparison.png"}
    assert {p.name for p in tmp_path.iterdir()} == names


def test_targeted_starts_from_a_labelled_photo_ends_in_the_target_and_walks(coffee, tmp_path):
    args = ["--target", "strawberry", "--queries", "5", "--norm", "linf", *LITE0]
    walk = ["--walk", "3", "--cw-searches", "1", "--cw-steps", "1"]
    lines = succeeded(call(step_14_decision, coffee, *args, *walk, "--output-dir", tmp_path))
    assert lines[0] == "Target class: strawberry (starting from the labelled photo imagenet_04)"
    saved, _ = saved_and_clean(coffee, tmp_path)
    seen = predict(load_model("efficientnet_lite0"), saved).argmax(1)
    assert label(seen[0]) == "strawberry" and lines[-2] == "New prediction: strawberry"
    assert lines[-1] == f"Saved walk.png in {tmp_path}"
    with Image.open(tmp_path / "walk.png") as picture:  # the original, 2 examples, 2 changes
        assert picture.width > 5 * 224


def test_the_sweep_on_a_tiny_setting(tmp_path):
    # Lite0 gets imagenet_01 right and takes imagenet_03 (a buckeye) for a custard apple.
    args = ["--photos", "imagenet_01,imagenet_03", "--queries", "3", "--cw-searches", "1"]
    lines = succeeded(
        call(
            step_14_decision, "--sweep", *args, "--cw-steps", "1", *LITE0, "--output-dir", tmp_path
        )
    )
    assert lines[1] == "Photos attacked (the model classifies them right): 1 of 2"
    assert lines[3].split()[0] == "3"
    with open(tmp_path / "decision.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["judged"] for row in rows] == ["True", "False"]
    assert float(rows[0]["L2 after 3"]) > 0 and rows[1]["L2 after 3"] == ""
    assert (tmp_path / "decision.png").stat().st_size > 0


def test_the_digits_table(tmp_path):
    torch.manual_seed(3)  # an untrained model (3 of the 30 right): the mechanics only
    weights = tmp_path / "digits_model0.pth"
    torch.save(digits.build_model(0.3, 0.4).state_dict(), weights)
    args = ["--models", weights, "--digits-count", "30", "--queries", "20", "--cw-searches", "1"]
    lines = succeeded(call(step_14_decision, *args, "--cw-steps", "2"))
    assert " ".join(lines[2].split()) == "model digits CW-L2 (white box) 20"
    row = lines[3].split()
    model = digits.load_trained(weights)
    _, _, x_test, y_test = digits.load_data(0)
    right = int((model(x_test[:30]).argmax(1) == y_test[:30]).sum())
    assert right > 0 and row[:2] == ["model0", str(right)]
    assert float(row[-1]) > 0  # a median L2 after 20 queries


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give one image, or --sweep, or --models"),
        (["--sweep", "--models", "x.pth"], "give one image, or --sweep, or --models"),
        (["--sweep", "--queries", "0"], "--queries"),
        (["--sweep", "--norm", "l1"], "--norm"),
    ],
)
def test_bad_arguments_are_one_line(args, message, tmp_path):
    assert_clean_error(call(step_14_decision, *args, "--output-dir", tmp_path / "out"), message)
    assert not (tmp_path / "out").exists()


def test_a_target_without_a_labelled_photo_is_one_line(coffee, tmp_path):
    result = call(
        step_14_decision, coffee, "--target", "goldfish", *LITE0, "--output-dir", tmp_path / "o"
    )
    assert_clean_error(result, "no labelled photo of goldfish", "strawberry")
    assert not (tmp_path / "o").exists()
