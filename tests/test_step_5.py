"""Step 5: the targeted attack, its bound, the saved PNG, and its bad inputs."""

import numpy as np
import pytest
import torch
from conftest import LITE0, assert_clean_error, run_script
from PIL import Image

from utils.attacks import FGSM, PGD, TutorialSGD
from utils.images import load_image_tensor
from utils.models import load_model, predict

GOLDFISH, PEMBROKE = 1, 263


def levels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def default_run(corgi, tmp_path_factory):
    out = tmp_path_factory.mktemp("step5")
    result = run_script("step_5_perturb.py", corgi, *LITE0, "--output-dir", out, check=True)
    return result, out


def test_default_target_is_goldfish_and_the_saved_png_is_goldfish(default_run):
    result, out = default_run
    lines = result.stdout.splitlines()
    assert lines[0] == "Target class: goldfish, Carassius auratus"
    assert lines[1].startswith("Loss: ") and lines[1].endswith(
        " / Class: Pembroke, Pembroke Welsh corgi"
    )
    assert lines[-2] == "Old prediction: Pembroke, Pembroke Welsh corgi"
    assert lines[-1] == "New prediction: goldfish, Carassius auratus"
    reloaded = run_script("step_2_pretrained.py", out / "adversarial.png", *LITE0, check=True)
    assert reloaded.stdout.splitlines()[0] == "Prediction: goldfish, Carassius auratus"


def test_early_stop_within_budget_is_reported(default_run):
    result, _ = default_run
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("Fooled after")]
    steps = int(line.split()[2])
    assert 0 < steps < 30


def test_outputs_bound_and_comparison(default_run, corgi):
    _, out = default_run
    change = np.abs(levels(out / "adversarial.png") - levels(corgi))
    assert change.max() <= 2  # epsilon 2/255: at most 2 levels in every channel
    assert change.max() > 0
    r = np.load(out / "adversarial_r.npy", allow_pickle=False)
    assert r.shape == (1, 3, 224, 224) and r.dtype == np.float32
    comparison = Image.open(out / "comparison.png")
    assert comparison.width > 3 * 224 and comparison.height > 224


def test_step_3_reproduces_the_image_from_the_saved_r(default_run, corgi, tmp_path):
    _, out = default_run
    png = tmp_path / "again.png"
    result = run_script(
        "step_3_adversarial.py",
        corgi,
        *LITE0,
        "--perturbation",
        out / "adversarial_r.npy",
        "--output",
        png,
        check=True,
    )
    assert np.abs(levels(png) - levels(out / "adversarial.png")).max() <= 1
    assert "New prediction: goldfish, Carassius auratus" in result.stdout


@pytest.mark.parametrize("epsilon, bound", [("0.0078", 2), ("3/255", 3)])
def test_epsilon_in_pixels_bounds_the_saved_image(corgi, tmp_path, epsilon, bound):
    args = ["--method", "pgd", "--epsilon", epsilon, "--output-dir", tmp_path]
    run_script("step_5_perturb.py", corgi, *LITE0, *args, check=True)
    assert np.abs(levels(tmp_path / "adversarial.png") - levels(corgi)).max() <= bound


def test_untargeted_fgsm_moves_away_from_the_original_class(corgi, tmp_path):
    args = ["--method", "fgsm", "--untargeted", "--output-dir", tmp_path]
    result = run_script("step_5_perturb.py", corgi, *LITE0, *args, check=True)
    new = result.stdout.splitlines()[-1]
    assert new.startswith("New prediction: ") and "Pembroke" not in new
    assert "Target class" not in result.stdout


def test_failed_attack_exits_non_zero_and_writes_nothing(corgi, tmp_path):
    # One targeted FGSM step at 2/255 does not reach goldfish: the budget runs out.
    result = run_script(
        "step_5_perturb.py", corgi, *LITE0, "--method", "fgsm", "--output-dir", tmp_path
    )
    assert result.returncode == 1
    assert_clean_error(result, "no adversarial image within 1 step(s)", "best probability")
    assert list(tmp_path.iterdir()) == []


def test_seed_makes_reruns_identical(corgi, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["--method", "pgd", "--seed", "7", "--output-dir", out]
        runs.append(run_script("step_5_perturb.py", corgi, *LITE0, *args, check=True).stdout)
        assert (out / "adversarial.png").exists()
    assert runs[0] == runs[1]
    for name in ("adversarial.png", "adversarial_r.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_random_resnet18_weights_run_end_to_end(corgi, random_resnet18, tmp_path):
    args = ["--weights", random_resnet18, "--untargeted", "--output-dir", tmp_path]
    result = run_script("step_5_perturb.py", corgi, "--model", "resnet18", *args, check=True)
    assert result.stdout.splitlines()[-1].startswith("New prediction: ")
    assert (tmp_path / "adversarial.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "no such animal"], "no ImageNet class is called 'no such animal'"),
        (["--target", "crane"], "ambiguous"),
        (["--target", "1000"], "outside 0..999"),
        (["--target", "Pembroke"], "already classified as Pembroke"),
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
def test_bad_arguments_are_one_line_errors_and_write_nothing(corgi, tmp_path, args, message):
    out = tmp_path / "out"
    result = run_script("step_5_perturb.py", corgi, *LITE0, *args, "--output-dir", out)
    assert_clean_error(result, message)
    assert not out.exists() or list(out.iterdir()) == []


def test_unwritable_output_dir(corgi, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_script("step_5_perturb.py", corgi, *LITE0, "--output-dir", blocker / "out")
    assert_clean_error(result, "cannot write to folder", str(blocker))


def test_bad_image(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    result = run_script("step_5_perturb.py", bad, *LITE0, "--output-dir", tmp_path / "out")
    assert_clean_error(result, str(bad), "not an image")


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


@pytest.mark.parametrize("attack", [TutorialSGD, PGD])
def test_attack_library_result_is_a_valid_8_bit_image_that_fools(lite0, corgi, attack):
    x = load_image_tensor(corgi)
    result = attack(lite0, 2 / 255, steps=30)(x, torch.tensor([GOLDFISH]))
    adversarial = result.adversarial
    assert result.success.item()
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert torch.equal(adversarial, torch.round(adversarial * 255) / 255)  # on the 8-bit grid
    assert (adversarial - x).abs().max() <= 2 / 255 + 1e-6
    assert predict(lite0, adversarial).argmax().item() == GOLDFISH
    # Frozen weights: the attack computed gradients for the image only.
    assert all(p.grad is None and not p.requires_grad for p in lite0.parameters())


def test_fgsm_is_one_signed_step_of_epsilon(lite0, corgi):
    x = load_image_tensor(corgi)
    result = FGSM(lite0, 4 / 255, targeted=False)(x, torch.tensor([PEMBROKE]))
    assert result.steps.item() == 1
    change = ((result.adversarial - x) * 255).round().abs()
    # Every pixel moved by 4 levels, unless it hit 0 or 255 first.
    assert change.max().item() == 4
    assert (change == 4).float().mean() > 0.9
