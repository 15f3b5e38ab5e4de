"""Step 7: adversarial training buys robustness on digits, VAT uses unlabelled digits, bad input."""

import sys

import pytest
import torch
from conftest import assert_clean_error, run_script
from PIL import Image

import step_7_adversarial_training as step7
from utils.attacks import FGSM
from utils.cli import run

EPSILON = 0.2
SEED = 0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """As the script does: tiny batches run much faster on one thread than on two busy ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return step7.load_data(SEED)


def train_models(data, losses, epochs=3):
    x_train, y_train, _, _ = data
    models = {}
    for name, loss in losses.items():
        torch.manual_seed(SEED)
        model = step7.build_model(x_train.mean().item(), x_train.std().item())
        models[name] = step7.train(model, loss, len(y_train), epochs, SEED, name)
    return models


@pytest.fixture(scope="module")
def results(data):
    x_train, y_train, x_test, y_test = data
    models = train_models(
        data,
        {
            "standard": step7.clean_loss(x_train, y_train),
            "adversarial": step7.adversarial_loss(x_train, y_train, "fgsm", EPSILON),
        },
    )
    torch.manual_seed(SEED)
    return {
        name: step7.evaluate(model, x_test, y_test, [EPSILON], name)
        for name, model in models.items()
    }


def test_split_is_stratified_pixels_on_the_8_bit_grid(data):
    x_train, _, x_test, y_test = data
    assert x_train.shape[1:] == (1, 8, 8) and len(x_train) + len(x_test) == 1797
    assert x_train.min() >= 0 and x_train.max() == 1
    assert torch.equal(x_train, torch.round(x_train * 255) / 255)
    assert torch.bincount(y_test).min() >= 35  # about 36 of each digit in 360


def test_adversarial_training_beats_standard_under_pgd_and_stays_accurate(results):
    standard, adversarial = results["standard"], results["adversarial"]
    assert standard["PGD"][0] > 0.9 and adversarial["PGD"][0] > 0.9  # clean accuracy
    assert adversarial["PGD"][1] > standard["PGD"][1] + 0.2
    assert adversarial["FGSM"][1] > standard["FGSM"][1] + 0.2
    for model in (standard, adversarial):
        assert model["PGD"][1] <= model["FGSM"][1] + 0.02  # PGD is the stronger attack


def test_without_early_stop_every_digit_takes_the_step(data):
    """Training attacks (early_stop=False) return the last iterate, even for digits that the
    model already gets wrong; evaluation attacks stop each digit at its first mistake."""
    x_train, y_train, x_test, y_test = data
    (model,) = train_models(data, {"1 epoch": step7.clean_loss(x_train, y_train)}, 1).values()
    wrong = model(x_test).argmax(1) != y_test
    assert wrong.any()
    stopping = FGSM(model, EPSILON, targeted=False)(x_test, y_test)
    full = FGSM(model, EPSILON, targeted=False, early_stop=False)(x_test, y_test)
    assert torch.equal(stopping.adversarial[wrong], x_test[wrong])
    moved = (full.adversarial - x_test).flatten(1).abs().amax(1)
    assert moved.min() > 0 and moved.max() <= EPSILON + 1 / 510  # bound, then 8-bit rounding
    assert torch.equal(full.success, model(full.adversarial).argmax(1) != y_test)
    # Training skips the verdict (it classifies the result itself): same images, no verdict.
    unverified = FGSM(model, EPSILON, targeted=False, early_stop=False, verify=False)
    training = unverified(x_test, y_test)
    assert torch.equal(training.adversarial, full.adversarial) and training.success is None
    with pytest.raises(ValueError, match="verify"):
        FGSM(model, EPSILON, early_stop=True, verify=False)


def test_vat_beats_training_on_the_labels_alone(data):
    x_train, y_train, x_test, y_test = data
    labelled = step7.pick_labelled(y_train, 5, SEED)
    assert torch.equal(torch.bincount(y_train[labelled]), torch.full((10,), 5))
    models = train_models(
        data,
        {
            "supervised": step7.semi_supervised_loss(x_train, y_train, labelled, SEED),
            "vat": step7.semi_supervised_loss(x_train, y_train, labelled, SEED, EPSILON),
        },
    )
    supervised, vat = (step7.accuracy(m, x_test, y_test) for m in models.values())
    assert vat > supervised + 0.03


def test_cli_prints_the_table_and_writes_plot_and_weights(tmp_path, data):
    result = run_script(
        "step_7_adversarial_training.py",
        *("--epochs", 1, "--eval-epsilons", "0.1,0.2", "--output-dir", tmp_path),
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[1].split() == [
        "epsilon",
        *("standard", "FGSM", "standard", "PGD", "adversarial", "FGSM", "adversarial", "PGD"),
    ]
    assert [line.split()[0] for line in lines[2:5]] == ["clean", "0.1", "0.2"]
    assert "training standard" in result.stderr  # tqdm progress

    with Image.open(tmp_path / "robustness.png") as png:
        assert png.format == "PNG"
        png.verify()
    _, _, x_test, y_test = data
    for column, name in ((1, "standard"), (3, "adversarial")):
        state = torch.load(tmp_path / f"digits_{name}.pth", weights_only=True)
        model = step7.build_model()
        model.load_state_dict(state)  # also restores the data's mean and std
        clean = f"{step7.accuracy(model, x_test, y_test):.1%}"
        assert lines[2].split()[column] == clean  # the saved model is the one in the table


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--epsilon", "0"], "--epsilon: must be in (0, 1]"),
        (["--epsilon", "-0.1"], "--epsilon: must be in (0, 1]"),
        (["--epsilon", "1.5"], "--epsilon: must be in (0, 1]"),
        (["--epochs", "0"], "--epochs: must be at least 1"),
        (["--eval-epsilons", "0.1,x"], "--eval-epsilons: '0.1,x': 'x' is not a number"),
        (["--eval-epsilons", "0.1,,0.2"], "--eval-epsilons"),
        (["--eval-epsilons", "0.1,2"], "--eval-epsilons: '0.1,2': must be in (0, 1]"),
        (["--seed", "-1"], "--seed: must be from 0 to 4294967295"),
        (["--method", "sgd"], "--method: invalid choice"),
        (["--semi-supervised", "0"], "--semi-supervised: must be at least 1"),
        (["--semi-supervised", "500"], "--semi-supervised 500: must leave some digits unlabelled"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_write_nothing(
    args, fragment, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    monkeypatch.setattr(
        sys, "argv", ["step_7_adversarial_training.py", *args, "--output-dir", str(out)]
    )
    with pytest.raises(SystemExit) as exit_info:
        run(step7.main)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not out.exists()


def test_unwritable_output_dir_is_a_clean_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_script("step_7_adversarial_training.py", "--output-dir", blocker / "out")
    assert_clean_error(result, "cannot write to folder", str(blocker / "out"))
