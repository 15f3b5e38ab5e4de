"""Many images at once: one line or row per image, bad files skipped, outputs that never
collide or overwrite an input, and the one table printer."""

import csv
import shutil

import pytest
import torch
from conftest import LITE0, assert_clean_error, call, files_in
from PIL import Image

import step_2_pretrained
import step_5_perturb
from adversarial.models import load_model, predict
from adversarial.plumbing.errors import UserError
from adversarial.plumbing.files import write_all
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.labels import label
from adversarial.plumbing.tables import format_table

GOLDFISH = 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(photos["coffee"], folder / "coffee.png")
    shutil.copy(photos["rocket"], folder / "rocket.png")
    Image.open(photos["chelsea"]).save(folder / "chelsea.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def images(folder):
    return [folder / name for name in ("chelsea.jpg", "coffee.png", "rocket.png")]


def test_batch_predictions_agree_with_one_at_a_time(images):
    lite0 = load_model("efficientnet_lite0")
    x = torch.cat([load_image_tensor(p) for p in images])
    batched = predict(lite0, x)
    single = torch.cat([predict(lite0, x[i : i + 1]) for i in range(len(x))])
    assert torch.equal(batched.argmax(1), single.argmax(1))
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)


def test_step_2_folder_lists_every_image_and_reports_the_bad_file(folder, images):
    result = call(step_2_pretrained, folder, *LITE0, "--batch-size", "2")
    assert result.returncode == 2  # one file could not be read
    assert f"error: {folder / 'notes.txt'}: not an image" in result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["image", "p", "prediction"]
    assert [row.split()[0] for row in rows] == [str(p) for p in images]
    assert rows[1].endswith("espresso")


def test_step_5_folder_writes_one_output_per_image_and_a_summary(folder, images, tmp_path):
    result = call(step_5_perturb, folder, *LITE0, "--batch-size", "2", "--output-dir", tmp_path)
    assert result.returncode == 1  # the text file is not an image: not every input succeeded
    assert f"error: {folder / 'notes.txt'}: not an image" in result.stderr
    assert result.stderr.strip().endswith("error: 1 of 4 images not fooled (see the notes)")
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = {row["image"]: row for row in csv.DictReader(f)}
    assert set(rows) == {str(p) for p in [*images, folder / "notes.txt"]}
    assert rows[str(folder / "notes.txt")]["success"] == "no"
    lite0 = load_model("efficientnet_lite0")
    for path in images:
        row = rows[str(path)]
        assert row["success"] == "yes", row
        assert row["final"] == label(GOLDFISH)
        assert 0 < int(row["linf_levels"]) <= 2 and 0 < int(row["steps"]) <= 30
        for suffix in ("adversarial.png", "adversarial_r.npy", "comparison.png"):
            assert (tmp_path / f"{path.stem}_{suffix}").exists()
        reloaded = load_image_tensor(tmp_path / f"{path.stem}_adversarial.png")
        assert predict(lite0, reloaded).argmax().item() == GOLDFISH
    assert str(folder / "coffee.png") in result.stdout  # the table is printed too


def test_inputs_that_would_share_outputs_are_refused_before_any_work(photos, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(photos["coffee"], tmp_path / folder / "pet.png")
    shutil.copy(photos["chelsea"], tmp_path / "a" / "cat.png")
    Image.open(photos["chelsea"]).save(tmp_path / "a" / "cat.jpg")
    out = tmp_path / "out"
    for inputs, names in [
        ([tmp_path / "a"], ["cat.jpg", "cat.png"]),
        ([tmp_path / "a" / "pet.png", tmp_path / "b"], ["a/pet.png", "b/pet.png"]),
    ]:
        result = call(step_5_perturb, *inputs, *LITE0, "--output-dir", out)
        assert_clean_error(result, *names, "would both be saved as")
        assert not out.exists()


def test_the_summary_never_overwrites_an_input(photos, tmp_path):
    shutil.copy(photos["coffee"], tmp_path / "coffee.png")
    (tmp_path / "summary.csv").write_text("mine\n")
    result = call(step_5_perturb, tmp_path, *LITE0, "--output-dir", tmp_path)
    assert_clean_error(result, "summary.csv: is an input and would be overwritten")
    assert (tmp_path / "summary.csv").read_text() == "mine\n"
    assert [p.name for p in files_in(tmp_path)] == ["coffee.png", "summary.csv"]


def test_a_folder_with_a_bad_file_exits_2_after_its_table(folder):
    result = call(step_2_pretrained, folder, *LITE0)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == 4  # the header and three images


def test_one_table_printer_aligns_numbers_right_and_text_left():
    lines = format_table(["name", "p", "note"], [["a", "0.5", "x"], ["long name", "12.25%", ""]])
    assert lines == [
        "name            p  note",
        "a             0.5  x",
        "long name  12.25%",
    ]


def test_write_all_writes_every_file_or_none(tmp_path):
    (tmp_path / "b.txt").mkdir()  # a folder where the second file should go

    def fine(tmp):
        with open(tmp, "w") as file:
            file.write("a")

    with pytest.raises(UserError, match=r"b\.txt"):
        write_all({tmp_path / "a.txt": fine, tmp_path / "b.txt": fine})
    assert files_in(tmp_path) == []  # neither file, nor any temporary
    write_all({tmp_path / "c.txt": fine, tmp_path / "d" / "e.txt": fine})
    assert [p.read_text() for p in files_in(tmp_path)] == ["a", "a"]
