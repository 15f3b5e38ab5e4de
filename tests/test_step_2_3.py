"""Steps 2 and 3 as a learner runs them: exact output lines, exact pixels, one-line errors."""

import hashlib
import pickle
import re

import numpy as np
import pytest
import torch
import torchvision
from conftest import (
    LITE0,
    assert_clean_error,
    call,
    decompression_bomb,
    run_script,
    succeeded,
    tutorial_file,
)
from PIL import Image
from torch import nn

import step_2_pretrained as STEP_2
import step_3_adversarial as STEP_3
from adversarial.models import load_model, predict
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import labels

ESPRESSO, CORGI = "espresso", "Pembroke, Pembroke Welsh corgi"
LITE0_MEAN, LITE0_STD = (0.498,) * 3, (0.502,) * 3
RESNET_MEAN, RESNET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TOPK_LINE = re.compile(r"^ *(\d{1,3}\.\d\d)%  (\S.*)$")


def digest(path):
    """What a file (or folder, or nothing) holds, to prove a script left its inputs alone."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return "folder" if path.is_dir() else "missing"


def read_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        return np.asarray(image, dtype=np.float64)


def expected_adversarial(x, r, mean, std, inverse_std=None):
    """inverse(normalize(x) + r) as 8-bit levels, computed with NumPy alone.

    x: (224, 224, 3) pixels in [0, 1]; r: (1, 3, 224, 224) in normalised space.
    """
    mean, std = np.array(mean), np.array(std)
    z = (x - mean) / std + r.reshape(3, 224, 224).transpose(1, 2, 0)
    inverse_std = std if inverse_std is None else np.array(inverse_std)
    return np.rint(np.clip(z * inverse_std + mean, 0, 1) * 255)


def crop(path):
    """The 224x224 crop the model sees, (224, 224, 3) in [0, 1] (checked against torchvision
    in test_images.py)."""
    return load_image_tensor(path)[0].permute(1, 2, 0).numpy().astype(np.float64)


@pytest.fixture(scope="module")
def random_r(tmp_path_factory):
    """A perturbation like the tutorial's: float32, (1, 3, 224, 224), normalised space, up to
    0.04 (the tutorial's reaches 0.042), seeded."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("r") / "r.npy"
    np.save(path, rng.uniform(-0.04, 0.04, size=(1, 3, 224, 224)).astype(np.float32))
    return path


# --- step 2: what does the network see? ------------------------------------------------------


def test_step_2_names_the_espresso(coffee):
    assert succeeded(call(STEP_2, coffee, *LITE0)) == [f"Prediction: {ESPRESSO}"]


def test_step_2_topk_lists_probabilities(coffee):
    lines = succeeded(call(STEP_2, coffee, *LITE0, "--topk", "3"))
    assert lines[0] == f"Prediction: {ESPRESSO}"
    assert len(lines) == 4
    matches = [TOPK_LINE.match(line) for line in lines[1:]]
    assert all(matches), lines
    percents = [float(m[1]) for m in matches]
    names = [m[2] for m in matches]
    assert names == [ESPRESSO, "cup", "consomme"]
    assert 90 < percents[0] < 98  # 94.43%, as in the README
    assert percents == sorted(percents, reverse=True) and sum(percents) <= 100.01


def resnet18_label(weights_file, pixels):
    """What torchvision's ResNet18 with these weights calls (224, 224, 3) pixels in [0, 1]:
    computed here, apart from the project's loader (no BatchNorm folding)."""
    net = torchvision.models.resnet18()
    net.load_state_dict(torch.load(weights_file, weights_only=True))
    x = (torch.tensor(pixels, dtype=torch.float32) - torch.tensor(RESNET_MEAN)) / torch.tensor(
        RESNET_STD
    )
    with torch.no_grad():
        logits = net.eval()(x.permute(2, 0, 1)[None])
    return labels()[int(logits.argmax())]


def test_step_2_runs_a_resnet18_from_a_weights_file(coffee, random_resnet18):
    lines = succeeded(call(STEP_2, coffee, "--model", "resnet18", "--weights", random_resnet18))
    assert lines == [f"Prediction: {resnet18_label(random_resnet18, crop(coffee))}"]


def test_step_2_rejects_a_bad_topk(coffee):
    assert_clean_error(call(STEP_2, coffee, *LITE0, "--topk", "0"), "--topk", "from 1 to 1000")


def test_step_2_the_real_command(coffee):
    result = run_script("step_2_pretrained.py", coffee, *LITE0)
    assert succeeded(result) == [f"Prediction: {ESPRESSO}"] and result.stderr == ""
    assert_clean_error(call(STEP_2, coffee, "--model", "vgg16"), "--model")


# --- step 3: add a given r -------------------------------------------------------------------


@pytest.fixture(scope="module")
def step_3_lite0(coffee, random_r, tmp_path_factory):
    output = tmp_path_factory.mktemp("step_3_lite0") / "adversarial.png"
    before = [digest(coffee), digest(random_r)]
    result = call(STEP_3, coffee, "--perturbation", random_r, "--output", output, *LITE0)
    assert [digest(coffee), digest(random_r)] == before
    return result, output


def test_step_3_prints_old_and_new_predictions(step_3_lite0):
    lines = succeeded(step_3_lite0[0])
    assert lines[0] == f"Old prediction: {ESPRESSO}"
    # The new prediction is the saved PNG's, classified here apart from the script.
    lite0 = load_model("efficientnet_lite0")
    saved = torch.tensor(read_png(step_3_lite0[1]) / 255, dtype=torch.float32)
    new = labels()[int(predict(lite0, saved.permute(2, 0, 1)[None]).argmax())]
    assert lines[1] == f"New prediction: {new}"
    assert len(lines) == 2 or lines[2].startswith("(before rounding to the 8-bit PNG")


def test_step_3_writes_inverse_of_normalized_x_plus_r(step_3_lite0, coffee, random_r):
    _, output = step_3_lite0
    saved = read_png(output)
    expected = expected_adversarial(crop(coffee), np.load(random_r), LITE0_MEAN, LITE0_STD)
    assert np.abs(saved - expected).max() <= 1
    assert np.abs(saved - crop(coffee) * 255).max() >= 4  # r was really added
    assert [p.name for p in output.parent.iterdir()] == ["adversarial.png"]  # no temporaries


def test_step_3_accepts_r_without_the_batch_axis(step_3_lite0, coffee, random_r, tmp_path):
    r3 = tmp_path / "r3.npy"
    np.save(r3, np.load(random_r)[0])
    output = tmp_path / "out" / "adversarial.png"  # a missing output folder is created
    result = call(STEP_3, coffee, "--perturbation", r3, "--output", output, *LITE0)
    assert succeeded(result) == succeeded(step_3_lite0[0])
    np.testing.assert_array_equal(read_png(output), read_png(step_3_lite0[1]))


def test_step_3_with_resnet18_uses_its_own_normalisation(
    coffee, random_r, random_resnet18, tmp_path
):
    output = tmp_path / "adversarial.png"
    args = ["--output", output, "--model", "resnet18", "--weights", random_resnet18]
    lines = succeeded(call(STEP_3, coffee, "--perturbation", random_r, *args))
    assert lines[0].startswith("Old prediction: ") and lines[1].startswith("New prediction: ")
    saved, r = read_png(output), np.load(random_r)
    assert np.abs(saved - expected_adversarial(crop(coffee), r, RESNET_MEAN, RESNET_STD)).max() <= 1
    # The check can tell: the tutorial's inverse (std 0.255 for 0.225) lands elsewhere in blue.
    wrong = expected_adversarial(crop(coffee), r, RESNET_MEAN, RESNET_STD, (0.229, 0.224, 0.255))
    assert np.abs(saved[..., :2] - wrong[..., :2]).max() <= 1
    assert np.abs(saved[..., 2] - wrong[..., 2]).max() > 1


# --- the tutorial's own published files (skipped when ../shared/tutorial is absent) -------------


def test_the_tutorials_r_on_its_corgi_with_the_offline_model(tmp_path):
    corgi, r = tutorial_file("corgi.png"), tutorial_file("adversarial_r.npy")
    output = tmp_path / "adversarial.png"
    lines = succeeded(call(STEP_3, corgi, "--perturbation", r, "--output", output, *LITE0))
    assert lines[0] == f"Old prediction: {CORGI}"
    expected = expected_adversarial(crop(corgi), np.load(r), LITE0_MEAN, LITE0_STD)
    assert np.abs(read_png(output) - expected).max() <= 1


def test_the_tutorials_r_breaks_its_own_epsilon():
    """Clamping before the optimiser step let r reach 10.73/255 against EPSILON = 10/255."""
    r = np.load(tutorial_file("adversarial_r.npy"), allow_pickle=False)
    assert r.shape == (1, 3, 224, 224) and r.dtype == np.float32
    assert 10 / 255 < np.abs(r).max() < 10.8 / 255


@pytest.mark.parametrize("name", ["adversarial.png", "adversarial.jpg"])
def test_the_tutorials_resnet18_examples_do_not_fool_the_offline_model(name):
    lines = succeeded(call(STEP_2, tutorial_file(name), *LITE0))
    assert lines == [f"Prediction: {CORGI}"]


# --- bad inputs: one line on stderr, nothing written, inputs untouched -----------------------


@pytest.fixture(scope="module")
def bad_images(coffee, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_images")
    paths = {
        name: folder / filename
        for name, filename in [
            ("missing", "missing.png"),
            ("folder", "folder.png"),
            ("not-an-image", "notes.png"),
            ("truncated", "truncated.png"),
            ("bomb", "bomb.png"),
        ]
    }
    paths["folder"].mkdir()
    paths["not-an-image"].write_text("this is a text file, not a picture\n")
    data = coffee.read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    decompression_bomb(paths["bomb"])
    return paths


@pytest.fixture(scope="module")
def bad_perturbations(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_perturbations")
    r = np.zeros((1, 3, 224, 224), dtype=np.float32)
    paths = {name: folder / f"{name}.npy" for name in ["missing", "text", "pickle"]}
    paths["text"].write_text("0.1 0.2 0.3\n")
    paths["pickle"].write_bytes(pickle.dumps({"r": [0.1, 0.2]}))
    paths["npz"] = folder / "r.npz"
    np.savez(paths["npz"], r=r)
    arrays = {
        "channels-last": r.reshape(1, 224, 224, 3),
        "nan": np.where(np.arange(r.size).reshape(r.shape) == 7, np.nan, r),
        "inf": np.where(np.arange(r.size).reshape(r.shape) == 7, -np.inf, r),
        "int": r.astype(np.int64),
        "object": r.astype(object),
    }
    for name, array in arrays.items():
        paths[name] = folder / f"{name}.npy"
        np.save(paths[name], array, allow_pickle=True)
    return paths


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_weights")
    paths = {name: folder / f"{name}.pth" for name in ["text", "linear", "ten-classes"]}
    paths["text"].write_text("these are not weights\n")
    torch.save(nn.Linear(4, 2).state_dict(), paths["linear"])
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), paths["ten-classes"])
    return paths


def assert_step_3_fails_cleanly(tmp_path, image, perturbation, *args, fragments, output=None):
    """Step 3 on bad input: one-line error, no output (nor temporary) file, inputs unchanged."""
    output = output or tmp_path / "out" / "adversarial.png"
    inputs = [image, perturbation, *[a for a in args if hasattr(a, "is_file")]]
    before = [digest(p) for p in inputs]
    result = call(STEP_3, image, "--perturbation", perturbation, "--output", output, *args)
    assert_clean_error(result, *fragments)
    assert result.stdout == ""
    assert not output.exists()
    if output.parent.is_dir():
        assert list(output.parent.iterdir()) == []
    assert [digest(p) for p in inputs] == before
    return result


BAD_IMAGE_PROBLEMS = {
    "missing": "no such file",
    "folder": "is a folder, not a file",
    "not-an-image": "not an image file Pillow can read",
    "truncated": "truncated or corrupt image",
    "bomb": "too many pixels",
}


@pytest.mark.parametrize("case", ["missing", "not-an-image"])  # step 3 tries them all
def test_step_2_bad_image(bad_images, case):
    path = bad_images[case]
    result = call(STEP_2, path, *LITE0)
    assert_clean_error(result, str(path), BAD_IMAGE_PROBLEMS[case])
    assert result.stdout == ""


@pytest.mark.parametrize("case", BAD_IMAGE_PROBLEMS)
def test_step_3_bad_image(bad_images, random_r, tmp_path, case):
    path = bad_images[case]
    fragments = [str(path), BAD_IMAGE_PROBLEMS[case]]
    assert_step_3_fails_cleanly(tmp_path, path, random_r, *LITE0, fragments=fragments)


BAD_PERTURBATION_PROBLEMS = {
    "missing": "no such perturbation file",
    "text": "not a NumPy .npy array",
    "pickle": "not a NumPy .npy array",
    "npz": "holds an .npz archive",
    "channels-last": "perturbation shape is (1, 224, 224, 3), expected (1, 3, 224, 224)",
    "nan": "NaN or infinite",
    "inf": "NaN or infinite",
    "int": "must be a float array, got dtype int64",
    "object": "not a NumPy .npy array",
}


@pytest.mark.parametrize("case", BAD_PERTURBATION_PROBLEMS)
def test_step_3_bad_perturbation(coffee, bad_perturbations, tmp_path, case):
    path = bad_perturbations[case]
    fragments = [str(path), BAD_PERTURBATION_PROBLEMS[case]]
    result = assert_step_3_fails_cleanly(tmp_path, coffee, path, *LITE0, fragments=fragments)
    assert "allow_pickle" not in result.stderr  # never advise loading a pickle unsafely


BAD_WEIGHTS_PROBLEMS = {
    "missing": "no such weights file",
    "text": "not a PyTorch state_dict file",
    "linear": "weights do not fit resnet18",
    "ten-classes": "fc.weight has shape (10, 512), the model needs (1000, 512)",
}


@pytest.mark.parametrize("case", BAD_WEIGHTS_PROBLEMS)
def test_step_3_bad_weights(coffee, random_r, bad_weights, tmp_path, case):
    path = bad_weights.get(case, tmp_path / "missing.pth")
    fragments = [str(path), BAD_WEIGHTS_PROBLEMS[case]]
    args = ["--model", "resnet18", "--weights", path]
    assert_step_3_fails_cleanly(tmp_path, coffee, random_r, *args, fragments=fragments)


def test_step_2_bad_weights(coffee, bad_weights):
    path = bad_weights["linear"]
    result = call(STEP_2, coffee, "--model", "resnet18", "--weights", path)
    assert_clean_error(result, str(path), "weights do not fit resnet18", "missing keys")


def test_unknown_model_is_an_argparse_error(coffee):
    result = call(STEP_2, coffee, "--model", "vgg16")
    assert result.returncode == 2
    assert_clean_error(result, "--model", "invalid choice: 'vgg16'", "efficientnet_lite0")


def test_step_3_output_folder_not_writable(coffee, random_r, tmp_path):
    blocker = tmp_path / "results"  # a regular file where the output folder should be
    blocker.write_text("keep me\n")
    output = blocker / "adversarial.png"
    fragments = ["cannot write to folder", str(blocker)]
    assert_step_3_fails_cleanly(
        tmp_path, coffee, random_r, *LITE0, fragments=fragments, output=output
    )
    assert blocker.read_text() == "keep me\n"


@pytest.mark.parametrize("suffix", [".xyz", ".pdf", ".eps", ".jpg"])
def test_step_3_refuses_an_output_it_cannot_read_back_exactly(coffee, random_r, tmp_path, suffix):
    output = tmp_path / f"adversarial{suffix}"
    fragments = [str(output), "save the image as .png or"]
    assert_step_3_fails_cleanly(
        tmp_path, coffee, random_r, *LITE0, fragments=fragments, output=output
    )


def test_step_3_the_real_command_fails_with_one_line(coffee, tmp_path):
    result = run_script("step_3_adversarial.py", coffee, "--perturbation", tmp_path / "none.npy")
    assert_clean_error(result, "no such perturbation file")
