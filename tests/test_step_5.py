"""Step 5: the targeted attack, its bound, the saved PNG and its r file, and its bad inputs."""

import numpy as np
import pytest
from conftest import LITE0, assert_clean_error, call, files_in, run_script, succeeded
from PIL import Image

import step_2_pretrained
import step_3_adversarial
import step_5_perturb

GOLDFISH = "goldfish, Carassius auratus"


def levels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def crop_levels(path):
    """The 224x224 crop the model sees, in 8-bit levels."""
    from adversarial.plumbing.images import load_image_tensor

    return np.rint(load_image_tensor(path)[0].permute(1, 2, 0).numpy() * 255).astype(np.int16)


def check_comparison(path, original, adversarial):
    """Three panels side by side under the title: the original crop, the adversarial PNG,
    and their difference amplified around mid-grey (found by their pixels, not the layout
    code: each panel is searched for in the picture)."""
    with Image.open(path) as picture:
        canvas = np.asarray(picture.convert("RGB"), dtype=np.int16)
    difference = adversarial - original
    gain = 0.5 / max(np.abs(difference).max() / 255, 1 / 255)
    amplified = np.rint(np.clip(0.5 + gain * difference / 255, 0, 1) * 255)
    lefts = []
    for panel in (original, adversarial, amplified):
        found = [
            (top, left)
            for top in range(canvas.shape[0] - 223)
            for left in range(0, canvas.shape[1] - 223, 2)
            if canvas[top, left, 0] == panel[0, 0, 0]
            and np.array_equal(canvas[top : top + 224, left : left + 224], panel)
        ]
        assert found, "a panel is missing from the comparison picture"
        lefts.append(found[0][1])
    assert lefts == sorted(lefts)  # original, adversarial, difference, left to right
    title_band = canvas[: found[0][0]]
    assert (title_band < 128).any()  # the title: dark text above the panels


@pytest.fixture(scope="module")
def default_run(coffee, tmp_path_factory):
    out = tmp_path_factory.mktemp("step5")
    return call(step_5_perturb, coffee, *LITE0, "--output-dir", out), out


def test_default_target_is_goldfish_and_the_saved_png_is_goldfish(default_run):
    result, out = default_run
    lines = succeeded(result)
    assert lines[0] == f"Target class: {GOLDFISH}"
    assert lines[1].startswith("Loss: ") and lines[1].endswith(" / Class: espresso")
    assert lines[-2] == "Old prediction: espresso"
    assert lines[-1] == f"New prediction: {GOLDFISH}"
    reloaded = succeeded(call(step_2_pretrained, out / "adversarial.png", *LITE0))
    assert reloaded == [f"Prediction: {GOLDFISH}"]


def test_early_stop_within_budget_is_reported(default_run):
    (line,) = [line for line in default_run[0].stdout.splitlines() if line.startswith("Fooled")]
    assert line.endswith("steps (max change 2/255 per pixel)")
    assert 0 < int(line.split()[2]) < 30


def test_outputs_bound_and_comparison(default_run, coffee):
    _, out = default_run
    assert sorted(p.name for p in files_in(out)) == [
        "adversarial.png",
        "adversarial_r.npy",
        "comparison.png",
    ]
    change = np.abs(levels(out / "adversarial.png") - crop_levels(coffee))
    assert 0 < change.max() <= 2  # epsilon 2/255: at most 2 levels in every channel
    r = np.load(out / "adversarial_r.npy", allow_pickle=False)
    assert r.shape == (1, 3, 224, 224) and r.dtype == np.float32
    check_comparison(out / "comparison.png", crop_levels(coffee), levels(out / "adversarial.png"))
    with Image.open(out / "adversarial.png") as png:
        assert png.text["made on"] == "efficientnet_lite0"


def test_step_3_reproduces_the_image_from_the_saved_r(default_run, coffee, tmp_path):
    _, out = default_run
    png = tmp_path / "again.png"
    args = ["--perturbation", out / "adversarial_r.npy", "--output", png]
    lines = succeeded(call(step_3_adversarial, coffee, *LITE0, *args))
    assert np.abs(levels(png) - levels(out / "adversarial.png")).max() <= 1
    assert f"New prediction: {GOLDFISH}" in lines


@pytest.mark.parametrize("epsilon, bound", [("0.0078", 2), ("3/255", 3)])
def test_epsilon_in_pixels_bounds_the_saved_image(coffee, tmp_path, epsilon, bound):
    args = ["--method", "pgd", "--epsilon", epsilon, "--output-dir", tmp_path]
    succeeded(call(step_5_perturb, coffee, *LITE0, *args))
    assert np.abs(levels(tmp_path / "adversarial.png") - crop_levels(coffee)).max() <= bound


def test_untargeted_fgsm_moves_away_from_the_original_class(photos, tmp_path):
    args = ["--method", "fgsm", "--untargeted", "--output-dir", tmp_path]
    lines = succeeded(call(step_5_perturb, photos["chelsea"], *LITE0, *args))
    assert lines[-2].startswith("Old prediction: ") and lines[-1].startswith("New prediction: ")
    assert lines[-2].removeprefix("Old") != lines[-1].removeprefix("New")
    assert not any(line.startswith("Target class") for line in lines)


def test_failed_attack_exits_1_and_writes_nothing(coffee, tmp_path):
    # One targeted FGSM step at 2/255 does not reach goldfish: the budget runs out.
    out = tmp_path / "out"
    result = call(step_5_perturb, coffee, *LITE0, "--method", "fgsm", "--output-dir", out)
    assert result.returncode == 1
    assert_clean_error(result, "no adversarial image within 1 step at", "best probability")
    assert not out.exists()  # not even an empty folder


def test_seed_makes_reruns_identical(coffee, tmp_path):
    runs = []
    for name in ("a", "b"):
        args = ["--method", "pgd", "--seed", "7", "--output-dir", tmp_path / name]
        runs.append(succeeded(call(step_5_perturb, coffee, *LITE0, *args)))
    assert runs[0] == runs[1]
    for name in ("adversarial.png", "adversarial_r.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_random_resnet18_weights_run_end_to_end(coffee, random_resnet18, tmp_path):
    from test_step_2_3 import resnet18_label

    args = ["--weights", random_resnet18, "--untargeted", "--output-dir", tmp_path]
    lines = succeeded(call(step_5_perturb, coffee, "--model", "resnet18", *args))
    old = resnet18_label(random_resnet18, crop_levels(coffee) / 255)
    new = resnet18_label(random_resnet18, levels(tmp_path / "adversarial.png") / 255)
    assert lines[-2:] == [f"Old prediction: {old}", f"New prediction: {new}"]
    assert new != old  # untargeted: the saved PNG left the class
    with Image.open(tmp_path / "adversarial.png") as png:
        assert png.text["made on"] == "resnet18"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "no such animal"], "no ImageNet class is called 'no such animal'"),
        (["--target", "crane"], "ambiguous"),
        (["--target", "1000"], "outside 0..999"),
        (["--target", "espresso"], "is already espresso"),
        (["--epsilon", "0"], "--epsilon"),
        (["--epsilon", "1.5"], "--epsilon"),
        (["--epsilon", "two"], "--epsilon"),
        (["--steps", "0"], "--steps"),
        (["--lr", "0"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--through-jpeg", "0"], "must be from 1 to 100, got 0"),
        (["--through-jpeg", "75,abc"], "--through-jpeg"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_write_nothing(coffee, tmp_path, args, message):
    out = tmp_path / "out"
    assert_clean_error(call(step_5_perturb, coffee, *LITE0, *args, "--output-dir", out), message)
    assert not out.exists()


def test_unwritable_output_dir(coffee, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = call(step_5_perturb, coffee, *LITE0, "--output-dir", blocker / "out")
    assert_clean_error(result, "cannot write to folder", str(blocker))


def test_an_output_that_is_a_folder_stops_the_run_before_any_work(coffee, tmp_path):
    (tmp_path / "comparison.png").mkdir()
    result = call(step_5_perturb, coffee, *LITE0, "--output-dir", tmp_path)
    assert_clean_error(result, "comparison.png: is a folder")
    assert files_in(tmp_path) == []


def test_bad_image(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    result = call(step_5_perturb, bad, *LITE0, "--output-dir", tmp_path / "out")
    assert_clean_error(result, str(bad), "not an image")


def test_the_real_command_runs_end_to_end(coffee, tmp_path):
    result = run_script("step_5_perturb.py", coffee, *LITE0, "--output-dir", tmp_path, "--timing")
    lines = succeeded(result)
    assert lines[0] == f"Target class: {GOLDFISH}" and lines[-2] == f"New prediction: {GOLDFISH}"
    assert lines[-1].startswith("Timing: start-up and imports ")
    assert (tmp_path / "adversarial.png").is_file()


def test_a_bad_budget_fails_with_one_line(coffee, tmp_path):
    result = call(step_5_perturb, coffee, *LITE0, "--steps", "10**20")
    assert result.returncode == 2
    assert_clean_error(result, "--steps")
