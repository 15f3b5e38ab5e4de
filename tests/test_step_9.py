"""Step 9: transfer to models the example was not made on; ensembles; the sweep's outputs."""

import csv
import statistics

import pytest
import torch
from conftest import LITE0, assert_clean_error, call, files_in, succeeded
from PIL import Image

import step_5_perturb
import step_9_transfer
from adversarial.attacks import PGD, random_signs
from adversarial.models import load_model, predict
from adversarial.plumbing.samples import sample_photo

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
AT_HAND = [*LITES, "squeezenet1_1"]  # offline, every model but ResNet18
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
    assert list(rows) == AT_HAND  # every model at hand (ResNet18's weights are not, offline)
    for member in LITES[:2]:
        assert GOLDFISH in rows[member] and rows[member].split()[-2:] == ["yes", "yes"]
    for other in AT_HAND[2:]:
        assert rows[other].split()[-1] != "yes"  # not made on it


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
    # Lite0 takes the buckeye for a custard apple, SqueezeNet the bull mastiff for a boxer;
    # the coffee has no label. Two families: Lite0 and Lite1, and SqueezeNet.
    photos, truth = ["imagenet_03", "imagenet_00", "coffee"], [990, 243]
    names = ["efficientnet_lite0", "efficientnet_lite1", "squeezenet1_1"]
    args = ["--photos", ",".join(photos), "--models", ",".join(names), "--epsilons", "4/255"]
    lines = succeeded(
        call(step_9_transfer, "--sweep", *args, "--steps", "1", "--output-dir", tmp_path)
    )
    assert lines[0] == (
        "Photos each model classifies right, of 3 (only these are judged): "
        "efficientnet_lite0 2, efficientnet_lite1 3, squeezenet1_1 2"
    )
    assert "Untargeted: share of the photos judged that fool each model" in lines
    assert (
        "Targeted (goldfish): share of the photos judged that fool each model "
        "(median rank of goldfish among the 1000 classes)"
    ) in lines
    with open(tmp_path / "transfer.csv", newline="") as file:
        rows = {(r["mode"], r["made on"], r["model"]): r for r in csv.DictReader(file)}
    ensembles = {" + ".join(m for m in names if m != out) for out in names}
    assert {made_on for _, made_on, _ in rows} == {*names, *ensembles, "random signs"}
    assert len(rows) == 2 * 7 * 3  # two modes, six sources and the noise, three models

    # The cells made on Lite0, on SqueezeNet and the noise's, computed here from the same
    # examples: each model judged on the photos it gets right, the true class where known.
    x = torch.cat([sample_photo(name) for name in photos])
    models = [load_model(name) for name in names]
    expected = {m.name: torch.tensor([*truth, predict(m, x[2:]).argmax()]) for m in models}
    for targeted in (False, True):
        mode = "targeted (goldfish)" if targeted else "untargeted"
        examples = {"random signs": random_signs(x, 4 / 255, seed=0)}
        for source in (models[0], models[2]):
            labels = torch.full((3,), 1) if targeted else expected[source.name]
            pgd = PGD(source, 4 / 255, 1, seed=0, targeted=targeted, early_stop=False)
            examples[source.name] = pgd(x, labels).adversarial
        for source, x_adversarial in examples.items():
            assert (x_adversarial - x).abs().max() <= 4 / 255 + 1e-6  # float32 rounding
            for model in models:
                judged = predict(model, x).argmax(1) == expected[model.name]
                p = predict(model, x_adversarial)[judged]
                seen = p.argmax(1)
                fooled = seen == 1 if targeted else seen != expected[model.name][judged]
                row = rows[mode, source, model.name]
                assert int(row["photos judged"]) == int(judged.sum())
                assert float(row["share fooled"]) == round(fooled.float().mean().item(), 3)
                assert row["made on it"] == str(model.name == source)
                if targeted:
                    ranks = [int((q > q[1]).sum()) + 1 for q in p]
                    assert float(row["median target rank"]) == statistics.median(ranks)

    # The summary: from one model, on another of its family and on one of another family.
    for mode in ("untargeted", "targeted (goldfish)"):
        pairs = [(s, m) for s in names for m in names if s != m]
        within = [rows[mode, s, m] for s, m in pairs if "squeezenet1_1" not in (s, m)]
        across = [rows[mode, s, m] for s, m in pairs if "squeezenet1_1" in (s, m)]
        summary = lines[lines.index(f"{mode.capitalize()}, in sum: mean share fooled") :]
        for kind, cells in [("another model, same family", within), ("a model of another", across)]:
            mean = statistics.mean(float(row["share fooled"]) for row in cells)
            line = next(line for line in summary if line.startswith(kind))
            assert line.split()[-1] == f"{mean:.0%}"
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
    result = call(step_5_perturb, coffee, "--model", "efficientnet_lite0,vgg16")
    assert result.returncode == 2
    assert_clean_error(result, "--model", "'vgg16' is not one of")
    result = call(step_5_perturb, coffee, "--model", "efficientnet_lite0,auto")
    assert_clean_error(result, "--model auto is for a single model")


def test_resnet18_joins_with_its_weights_file(ensemble_example, random_resnet18):
    """Offline, ResNet18 is at hand only through --weights; then it joins every table."""
    lines = succeeded(call(step_9_transfer, ensemble_example, "--weights", random_resnet18))
    assert list(table(lines)) == ["resnet18", *AT_HAND]
    lite_file = ["--model", "efficientnet_lite0,efficientnet_lite1", "--weights", random_resnet18]
    result = call(step_5_perturb, ensemble_example, *lite_file)
    assert_clean_error(result, "--weights with several models is ResNet18's")
