"""Step 6: JPEG undoes the naive attack but not one that saw JPEG coming; sweeps; squeezers."""

import io

import cv2
import numpy as np
import pytest
import torch
from conftest import LITE0, assert_clean_error, call, files_in, run_script, succeeded
from PIL import Image

import step_2_pretrained as STEP_2
import step_5_perturb
import step_6_defense as STEP_6
from adversarial.defenses import DEFENSES, bit_depth, encode_jpeg, jpeg, median, save_jpeg
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.images import from_uint8, load_image_tensor, to_uint8

GOLDFISH, ESPRESSO = "goldfish, Carassius auratus", "espresso"


def prediction(line, prefix):
    """'Prediction after JPEG (quality 75): goldfish, Carassius auratus (0.19)' -> the label."""
    assert line.startswith(prefix), line
    return line.removeprefix(prefix).rsplit(" (", 1)[0]


@pytest.fixture(scope="module")
def naive(coffee, tmp_path_factory):
    """Step 5's default attack (the tutorial's SGD, 2/255), which never saw JPEG."""
    out = tmp_path_factory.mktemp("naive")
    succeeded(call(step_5_perturb, coffee, *LITE0, "--output-dir", out))
    return out / "adversarial.png"


def test_jpeg_75_undoes_the_naive_attack_and_step_2_agrees(naive, tmp_path):
    assert succeeded(call(STEP_2, naive, *LITE0)) == [f"Prediction: {GOLDFISH}"]
    result = call(STEP_6, naive, *LITE0, "--output", tmp_path / "a.jpg")
    before, after = succeeded(result)
    assert prediction(before, "Prediction before JPEG: ") == GOLDFISH
    defended = prediction(after, "Prediction after JPEG (quality 75): ")
    assert defended == ESPRESSO
    assert succeeded(call(STEP_2, tmp_path / "a.jpg", *LITE0)) == [f"Prediction: {defended}"]


# An attack through JPEG 75 that survives it: docs/step_6_defense.md runs it as printed.


def test_sweep_table_and_plot(naive, coffee, tmp_path):
    plot = tmp_path / "sweep.png"
    lines = succeeded(
        call(STEP_6, naive, *LITE0, "--sweep", "--original", coffee, "--output", plot)
    )
    assert lines[1] == f"target class: {GOLDFISH} (top class of {naive} before JPEG)"
    assert lines[2] == f"true class:   {ESPRESSO} (top class of {coffee})"
    header, *rows, saved = lines[3:]
    assert saved == f"Saved the plot to {plot} (dotted: without JPEG)"
    assert header.split()[:4] == ["quality", "adversarial.png:", "top", "class"]
    assert [row.split()[0] for row in rows] == ["none", *map(str, range(10, 101, 10))]
    assert GOLDFISH in rows[0] and GOLDFISH not in rows[5]  # quality 50 restores the espresso
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 300


def test_bit_depth_saves_the_squeezed_png(naive, tmp_path):
    output = tmp_path / "bits.png"
    args = ["--defense", "bits", "--output", output]
    before, after = succeeded(call(STEP_6, naive, *LITE0, *args))
    assert prediction(before, "Prediction before bit-depth reduction: ") == GOLDFISH
    assert after.startswith("Prediction after bit-depth reduction (bits 5): ")
    assert torch.equal(load_image_tensor(output), bit_depth(load_image_tensor(naive), 5))


def test_median_sweep_uses_sizes_3_5_7(naive, tmp_path):
    args = ["--defense", "median", "--sweep", "--output", tmp_path / "median.svg"]
    lines = succeeded(call(STEP_6, naive, *LITE0, *args))
    assert lines[2].startswith("true class:   ") and "runner-up" in lines[2]
    assert [row.split()[0] for row in lines[4:-1]] == ["none", "3", "5", "7"]
    assert (tmp_path / "median.svg").read_text().lstrip().startswith("<?xml")


def test_default_outputs_go_to_the_outputs_folder(naive, tmp_path):
    succeeded(run_script("step_6_defense.py", naive, *LITE0, "--defense", "bits", cwd=tmp_path))
    assert files_in(tmp_path) == [tmp_path / "outputs" / "adversarial_bits.png"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quality", "0"], "--quality: must be from 1 to 100, got 0"),
        (["--quality", "101"], "--quality: must be from 1 to 100, got 101"),
        (["--quality", "abc"], "--quality: 'abc' is not an integer"),
        (["--sweep", "--qualities", "50,abc"], "--qualities"),
        (["--defense", "median", "--size", "4"], "median filter size must be odd"),
        (["--bits", "4"], "--bits is for --defense bits"),
        (["--output", "a.png"], "a.png: save the image after JPEG as .jpg or .jpeg"),
        (["--sweep", "--quality", "50"], "--sweep tries several values of --quality"),
        (["--qualities", "50"], "--qualities is for --sweep with --defense jpeg"),
        (["--defense", "bits", "--bits", "9"], "--bits: must be from 1 to 8, got 9"),
        (["--defense", "median", "--size", "999"], "--size: must be from 3 to 99, got 999"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_write_nothing(coffee, tmp_path, args, message):
    output = [] if "--output" in args else ["--output", tmp_path / "out" / "defended.jpg"]
    result = call(STEP_6, coffee, *LITE0, *args, *output)
    assert_clean_error(result, message)
    assert files_in(tmp_path) == []


def test_output_may_not_overwrite_the_input(naive):
    before = naive.read_bytes()
    result = call(STEP_6, naive, *LITE0, "--defense", "median", "--output", naive)
    assert_clean_error(result, "is an input and would be overwritten")
    assert naive.read_bytes() == before


def test_jpeg_is_exactly_pillows_round_trip_of_the_8_bit_image():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 37, 53, 3), dtype=np.uint8)
    x = torch.cat([from_uint8(p) for p in pixels]).double()
    # Off-grid values and a live autograd graph, as inside an attack: rounded, detached.
    x_attack = (x + 0.4 / 255).requires_grad_(True)
    for quality in (10, 75):
        expected = []
        for p in pixels:
            buffer = io.BytesIO()
            Image.fromarray(p).save(buffer, format="JPEG", quality=quality)
            expected.append(np.asarray(Image.open(buffer).convert("RGB")))
        out = jpeg(x_attack, quality)
        assert out.shape == x.shape and out.dtype == torch.float64 and not out.requires_grad
        assert np.array_equal(np.stack([to_uint8(o) for o in out]), np.stack(expected))


@pytest.mark.parametrize("quality", [0, 101, 7.5, "75"])
def test_jpeg_refuses_a_bad_quality(quality):
    with pytest.raises(UserError, match="JPEG quality"):
        jpeg(torch.zeros(1, 3, 8, 8), quality)


def test_saved_jpeg_is_the_224_crop_that_was_classified(tmp_path):
    # A 320x240 photo: the model sees its 224x224 crop, and so does the defense.
    ramp = np.linspace(0, 255, 320 * 240 * 3).reshape(240, 320, 3).astype(np.uint8)
    Image.fromarray(ramp).save(tmp_path / "photo.png")
    x = load_image_tensor(tmp_path / "photo.png")
    classified = save_jpeg(x, tmp_path / "photo.jpg", quality=75)
    assert (tmp_path / "photo.jpg").read_bytes() == encode_jpeg(to_uint8(x), 75)
    assert torch.equal(load_image_tensor(tmp_path / "photo.jpg"), classified)
    assert torch.equal(jpeg(x, 75), classified)
    assert Image.open(tmp_path / "photo.jpg").size == (224, 224)


def test_squeezers_stay_on_the_8_bit_grid():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    x = from_uint8(pixels)
    assert torch.equal(bit_depth(x, 8), x)
    assert set(to_uint8(bit_depth(x, 1)).ravel().tolist()) == {0, 255}
    assert len(np.unique(to_uint8(bit_depth(x, 3)))) == 8
    assert np.array_equal(to_uint8(median(x, 5)), cv2.medianBlur(pixels, 5))
    for name, defense in DEFENSES.items():
        out = defense.apply(x, defense.default)
        assert torch.equal(from_uint8(to_uint8(out)), out), name
