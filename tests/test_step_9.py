"""Step 9: transfer to models the example was not made on; ensembles; the sweep's outputs."""

import csv

import pytest
import torch
from conftest import LITE0, assert_clean_error, call, files_in, run_script, succeeded
from PIL import Image

import step_5_perturb
import step_9_transfer
from adversarial.attacks import PGD, random_signs
from adversarial.models import load_model, predict
from adversarial.plumbing.samples import sample_photo

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
GOLDFISH = "goldfish, Carassius auratus"


@pytest.fixture(scope="module")
def ensemble_example(coffee, tmp_path_factory):
    """Step 5's default attack on an ensemble of Lite0 and Lite1."""
    out = tmp_path_factory.mktemp("ensemble")
    args = ["--model", "efficientnet_lite0,efficientnet_lite1", "--output-dir", out]
    lines = succeeded(call(step_5_perturb, coffee, *args))
    assert lines[-1] == f"New prediction: {GOLDFISH}"
    return out / "adversarial.png"


def table(lines):
    """{model: row cells} from step 9's table (the lines after its header)."""
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    return {line.split()[0]: line for line in lines[start + 1 :]}


def test_an_ensemble_example_fools_every_member_and_says_where_it_was_made(ensemble_example):
    with Image.open(ensemble_example) as png:
        assert png.text["made on"] == "efficientnet_lite0,efficientnet_lite1"
        assert png.text["target"] == "1" and png.text["original"] == "967"  # espresso
    lines = succeeded(call(step_9_transfer, ensemble_example))
    assert lines[0] == "Made on: efficientnet_lite0, efficientnet_lite1"
    assert lines[1] == f"Target: {GOLDFISH}"
    rows = table(lines)
    assert list(rows) == LITES  # every model at hand (ResNet18's weights are not, offline)
    for member in LITES[:2]:
        assert GOLDFISH in rows[member] and rows[member].split()[-2:] == ["yes", "yes"]
    assert rows["efficientnet_lite2"].split()[-1] != "yes"  # not made on it


def test_the_models_asked_for_and_an_untargeted_example(photos, tmp_path):
    args = ["--untargeted", "--method", "pgd", "--epsilon", "8/255", "--output-dir", tmp_path]
    succeeded(call(step_5_perturb, photos["chelsea"], *LITE0, *args))
    example, models = tmp_path / "adversarial.png", "efficientnet_lite2,efficientnet_lite0"
    lines = succeeded(call(step_9_transfer, example, "--models", models))
    assert lines[1] == "Target: none (untargeted)"
    rows = table(lines[:-1])
    assert list(rows) == ["efficientnet_lite2", "efficientnet_lite0"]
    assert all("?" in row.split()[-2:] for row in rows.values())  # no verdict without --original
    assert lines[-1].startswith("(untargeted: pass --original CLEAN")
    judged = succeeded(
        call(step_9_transfer, example, "--models", models, "--original", photos["chelsea"])
    )
    assert table(judged)["efficientnet_lite0"].split()[-2:] == ["yes", "yes"]


def test_without_a_record_the_original_decides(coffee, photos, tmp_path):
    # A photo of a cat is "not the espresso" for every model: fooled, against --original.
    lines = succeeded(call(step_9_transfer, photos["chelsea"], "--original", coffee))
    assert lines[0] == "Made on: unknown (not a PNG from step 5)"
    assert all(row.split()[-1] == "yes" for row in table(lines).values())
    unknown = succeeded(call(step_9_transfer, photos["chelsea"], "--models", "efficientnet_lite0"))
    assert table(unknown[:-1])["efficientnet_lite0"].split()[-1] == "?"


def test_the_sweep_on_a_tiny_setting_writes_its_table_and_picture(tmp_path):
    args = ["--sweep", "--photos", "coffee,chelsea", "--epsilons", "4/255", "--steps", "2"]
    lines = succeeded(call(step_9_transfer, *args, "--output-dir", tmp_path))
    assert "Untargeted: share of 2 photos that fool each model" in lines
    assert (
        "Targeted (goldfish): share of 2 photos that fool each model "
        "(median rank of goldfish among the 1000 classes)"
    ) in lines
    with open(tmp_path / "transfer.csv", newline="") as file:
        rows = {(r["mode"], r["made on"], r["model"]): r for r in csv.DictReader(file)}
    ensembles = {" + ".join(m for m in LITES if m != out) for out in LITES}
    assert {made_on for _, made_on, _ in rows} == {*LITES, *ensembles, "random signs"}
    assert len(rows) == 2 * 7 * 3  # two modes, six sources and the noise, three models

    # The cells made on Lite0 and the noise's, computed here from the same examples.
    x = torch.cat([sample_photo("coffee"), sample_photo("chelsea")])
    models = [load_model(name) for name in LITES]
    clean = {m.name: predict(m, x).argmax(1) for m in models}
    for targeted in (False, True):
        labels = torch.full((2,), 1) if targeted else clean["efficientnet_lite0"]
        pgd = PGD(models[0], 4 / 255, 2, seed=0, targeted=targeted, early_stop=False)
        examples = {"efficientnet_lite0": pgd(x, labels).adversarial}
        examples["random signs"] = random_signs(x, 4 / 255, seed=0)
        mode = "targeted (goldfish)" if targeted else "untargeted"
        for source, x_adversarial in examples.items():
            assert (x_adversarial - x).abs().max() <= 4 / 255 + 1e-6  # float32 rounding
            for model in models:
                p = predict(model, x_adversarial)
                fooled = p.argmax(1) == 1 if targeted else p.argmax(1) != clean[model.name]
                row = rows[mode, source, model.name]
                assert float(row["share fooled"]) == fooled.float().mean().item()
                assert row["made on it"] == str(model.name == source)
                if targeted:
                    ranks = [int((p[i] > p[i, 1]).sum()) + 1 for i in range(2)]
                    assert float(row["median target rank"]) == sum(ranks) / 2
    with Image.open(tmp_path / "transfer.png") as plot:
        assert plot.format == "PNG" and plot.width > 2 * 300  # two panels
    assert sorted(p.name for p in files_in(tmp_path)) == ["transfer.csv", "transfer.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "--models", "efficientnet_lite0,vgg16"], "'vgg16' is not one of"),
        (["--sweep", "--photos", "coffee,dog"], "'dog' is not one of"),
        (["--sweep", "--epsilons", "4/255,2"], "--epsilons"),
        ([], "give one adversarial image, or --sweep"),
        (["--sweep", "--original", "x.png"], "--original is for one image"),
        (["--sweep", "--models", "efficientnet_lite0", "--weights", "r.pth"], "add resnet18"),
    ],
)
def test_bad_arguments(args, message, tmp_path):
    result = call(step_9_transfer, *args, "--output-dir", tmp_path / "out")
    assert_clean_error(result, message)
    assert not (tmp_path / "out").exists()


def test_step_5_refuses_a_bad_model_in_the_list_with_one_line(coffee, tmp_path):
    result = run_script("step_5_perturb.py", coffee, "--model", "efficientnet_lite0,vgg16")
    assert result.returncode == 2
    assert_clean_error(result, "--model", "'vgg16' is not one of")
    result = call(step_5_perturb, coffee, "--model", "efficientnet_lite0,auto")
    assert_clean_error(result, "--model auto is for a single model")


def test_resnet18_joins_with_its_weights_file(ensemble_example, random_resnet18):
    """Offline, ResNet18 is at hand only through --weights; then it joins every table."""
    lines = succeeded(call(step_9_transfer, ensemble_example, "--weights", random_resnet18))
    assert list(table(lines)) == ["resnet18", *LITES]
    lite_file = ["--model", "efficientnet_lite0,efficientnet_lite1", "--weights", random_resnet18]
    result = call(step_5_perturb, ensemble_example, *lite_file)
    assert_clean_error(result, "--weights with several models is ResNet18's")
