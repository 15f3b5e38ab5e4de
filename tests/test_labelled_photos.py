"""Foolbox's 20 labelled ImageNet photos: step 1 saves them with their true classes, step 2
reports how many a model gets right."""

import importlib.util
from pathlib import Path

import pytest
from conftest import assert_clean_error, call, succeeded
from PIL import Image, PngImagePlugin

import step_1_sample_image
import step_2_pretrained
from adversarial.plumbing.labels import label
from adversarial.plumbing.samples import sample_pixels


def foolbox_photos():
    """{'imagenet_00': (path, class index), ...}, from the file names imagenet_<nn>_<class>.jpg."""
    folder = Path(importlib.util.find_spec("foolbox").submodule_search_locations[0]) / "data"
    photos = {}
    for path in folder.glob("imagenet_*.jpg"):
        _, number, index = path.stem.split("_")
        photos[f"imagenet_{number}"] = (path, int(index))
    return photos


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled") / "imagenet"
    lines = succeeded(call(step_1_sample_image, "--name", "imagenet", "--output", folder))
    assert lines == [
        f"Saved foolbox's 20 labelled ImageNet photos to {folder} "
        "(imagenet_00.png ... imagenet_19.png, true class in each PNG)"
    ]
    return folder


def test_step_1_saves_every_labelled_photo_with_its_true_class(labelled):
    photos = foolbox_photos()
    assert sorted(p.stem for p in labelled.iterdir()) == sorted(photos) and len(photos) == 20
    for name, (jpeg, index) in photos.items():
        with Image.open(labelled / f"{name}.png") as png, Image.open(jpeg) as original:
            assert png.text == {"true class": str(index)}
            assert png.tobytes() == original.convert("RGB").tobytes()  # the pixels, unchanged


def test_step_1_saves_one_labelled_photo(tmp_path):
    lines = succeeded(
        call(step_1_sample_image, "--name", "imagenet_03", "--output", tmp_path / "b.png")
    )
    assert lines == [
        f"Saved foolbox's ImageNet photo 'imagenet_03' to {tmp_path / 'b.png'} (512x512), "
        "true class: buckeye, horse chestnut, conker"
    ]
    jpeg = tmp_path / "b.jpg"  # a JPEG cannot hold the record: the photo alone
    succeeded(call(step_1_sample_image, "--name", "imagenet_03", "--output", jpeg))
    with Image.open(jpeg) as image:
        assert image.format == "JPEG" and "true class" not in image.info


def test_step_2_reports_the_true_classes_and_the_accuracy(labelled):
    lines = succeeded(call(step_2_pretrained, labelled, "--model", "squeezenet1_1"))
    header, *rows, accuracy = lines
    assert header.split() == ["image", "p", "prediction", "true", "class", "right", "top", "5"]
    right = top5 = 0
    for row, (name, (_, index)) in zip(rows, sorted(foolbox_photos().items()), strict=True):
        cells = [cell.strip() for cell in row.split("  ") if cell.strip()]  # 2+ spaces apart
        path, _, prediction, true_class, is_right, in_top5 = cells
        assert path == str(labelled / f"{name}.png") and true_class == label(index)
        assert is_right == ("yes" if prediction == true_class else "no")
        right += is_right == "yes"
        top5 += in_top5 == "yes"
    assert len(rows) == 20 and right >= 10  # SqueezeNet 1.1: about 58% top-1 on ImageNet
    assert accuracy == (
        f"Accuracy on 20 labelled photos: top-1 {right}/20 ({right / 20:.0%}), "
        f"top-5 {top5}/20 ({top5 / 20:.0%})"
    )


def test_step_2_names_the_true_class_of_one_photo(labelled):
    lines = succeeded(
        call(step_2_pretrained, labelled / "imagenet_01.png", "--model", "squeezenet1_1")
    )
    assert lines == ["Prediction: folding chair", "True class: folding chair"]


def test_a_damaged_record_is_a_one_line_error(tmp_path):
    record = PngImagePlugin.PngInfo()
    record.add_text("true class", "1000")
    path = tmp_path / "damaged.png"
    Image.fromarray(sample_pixels("coffee")).save(path, pnginfo=record)
    result = call(step_2_pretrained, path, "--model", "squeezenet1_1")
    assert_clean_error(result, str(path), "'true class' record is damaged")


def test_without_foolbox_a_labelled_photo_is_a_one_line_error_naming_it(uninstalled, tmp_path):
    uninstalled({"foolbox"})
    result = call(step_1_sample_image, "--name", "imagenet", "--output", tmp_path / "imagenet")
    assert_clean_error(result, "the foolbox package is not installed", "requirements-data.txt")
    assert not (tmp_path / "imagenet").exists()
