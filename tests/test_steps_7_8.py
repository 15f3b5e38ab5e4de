"""Steps 7 and 8: adversarial training buys robustness on digits, VAT uses unlabelled digits."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_clean_error, call, files_in, run_script, succeeded
from PIL import Image

import step_7_adversarial_training as step7
import step_8_virtual_adversarial_training as step8
from adversarial import digits
from adversarial.attacks import FGSM, PGD
from adversarial.training import MADRY_PGD_STEPS, goodfellow_loss, madry_loss

EPSILON = 0.2
SEED = 0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def results(data):
    x_train, y_train, x_test, y_test = data
    losses = {
        "standard": digits.clean_loss(x_train, y_train),
        "adversarial": step7.adversarial_loss(x_train, y_train, "fgsm", EPSILON),
    }
    models = digits.train_models(losses, x_train, 2, SEED)
    return digits.evaluate_all(models, x_test, y_test, [EPSILON], SEED)


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
    losses = {"1 epoch": digits.clean_loss(x_train, y_train)}
    (model,) = digits.train_models(losses, x_train, 1, SEED).values()
    wrong = model(x_test).argmax(1) != y_test
    assert wrong.any()
    stopping = FGSM(model, EPSILON, targeted=False)(x_test, y_test)
    full = FGSM(model, EPSILON, targeted=False, early_stop=False)(x_test, y_test)
    assert torch.equal(stopping.adversarial[wrong], x_test[wrong])
    moved = (full.adversarial - x_test).flatten(1).abs().amax(1)
    assert moved.min() > 0 and moved.max() <= EPSILON + 1e-6  # the bound, on the 8-bit image
    assert torch.equal(full.success, model(full.adversarial).argmax(1) != y_test)


def test_the_training_objectives_are_the_papers(data):
    """Goodfellow et al.'s: the mean of the clean and the FGSM cross-entropies; Madry et
    al.'s: the cross-entropy of the PGD examples alone. Computed here from the attacks."""
    x_train, y_train, _, _ = data
    x, y = x_train[:64], y_train[:64]
    losses = {"1 epoch": digits.clean_loss(x_train, y_train)}
    (model,) = digits.train_models(losses, x_train, 1, SEED).values()
    x_fgsm = FGSM(model, EPSILON, targeted=False, early_stop=False)(x, y).adversarial
    mix = (F.cross_entropy(model(x), y) + F.cross_entropy(model(x_fgsm), y)) / 2
    torch.testing.assert_close(goodfellow_loss(model, x, y, EPSILON), mix)
    torch.manual_seed(1)
    pgd = PGD(model, EPSILON, MADRY_PGD_STEPS, targeted=False, early_stop=False)
    alone = F.cross_entropy(model(pgd(x, y).adversarial), y)
    torch.manual_seed(1)  # the same random start
    torch.testing.assert_close(madry_loss(model, x, y, EPSILON), alone)
    assert alone > F.cross_entropy(model(x), y)


def test_vat_beats_training_on_the_labels_alone(data):
    x_train, y_train, x_test, y_test = data
    labelled = step8.pick_labelled(y_train, 5, SEED)
    assert torch.equal(torch.bincount(y_train[labelled]), torch.full((10,), 5))
    losses = {
        objective: step8.semi_supervised_loss(x_train, y_train, labelled, SEED, objective, EPSILON)
        for objective in ("supervised", "vat")
    }
    models = digits.train_models(losses, x_train, 2, SEED)
    supervised, vat = (digits.accuracy(m, x_test, y_test) for m in models.values())
    assert vat > supervised + 0.03


def check_table_plot_and_weights(lines, output_dir, plot, names, data):
    assert lines[1].split() == [
        "epsilon",
        *(w for n in names for a in ("FGSM", "PGD") for w in (n, "vs", a)),
    ]
    assert [line.split()[0] for line in lines[2:4]] == ["clean", "0.2"]
    with Image.open(output_dir / plot) as png:
        assert png.format == "PNG"
        png.verify()
    _, _, x_test, y_test = data
    for i, name in enumerate(names):
        column = 1 + 2 * i  # each model's FGSM column
        model = digits.build_model()
        model.load_state_dict(torch.load(output_dir / f"digits_{name}.pth", weights_only=True))
        clean = f"{digits.accuracy(model, x_test, y_test):.1%}"  # mean and std came back too
        assert lines[2].split()[column] == clean  # the saved model is the one in the table


def test_step_7_prints_the_table_and_writes_plot_and_weights(tmp_path, data):
    args = ["--epochs", 1, "--eval-epsilons", "0.2", "--output-dir", tmp_path]
    result = call(step7, *args)
    lines = succeeded(result)
    assert lines[0] == "Accuracy on the held-out digits, clean and under attack:"
    check_table_plot_and_weights(
        lines, tmp_path, "robustness.png", ["standard", "fgsm_trained"], data
    )
    assert (
        lines[-1]
        == f"Saved robustness.png, digits_standard.pth, digits_fgsm_trained.pth in {tmp_path}"
    )
    assert "training standard" not in result.stderr  # progress only on a terminal


def test_step_8_prints_the_table_and_writes_plot_and_weights(tmp_path, data):
    args = ["--labels", 5, "--epochs", 1, "--eval-epsilons", "0.2", "--output-dir", tmp_path]
    lines = succeeded(call(step8, *args))
    assert lines[0] == "50 labelled digits, 1387 unlabelled"
    check_table_plot_and_weights(
        lines[1:], tmp_path, "semi_supervised.png", ["supervised", "adversarial", "vat"], data
    )


@pytest.mark.parametrize("step", [step7, step8])
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--epsilon", "0"], "--epsilon: must be from 1/255 (one 8-bit level) to 1"),
        (["--epsilon", "-0.1"], "--epsilon: must be from 1/255"),
        (["--epsilon", "1.5"], "--epsilon: must be from 1/255"),
        (["--epsilon", "0.001"], "--epsilon: must be from 1/255"),
        (["--epsilon=1e400"], "--epsilon: must be from 1/255"),
        (["--epsilon=1e1000000000"], "--epsilon: must be from 1/255"),
        (["--epochs", "0"], "--epochs: must be from 1 to 1000"),
        (["--eval-epsilons", "0.1,x"], "--eval-epsilons: '0.1,x': 'x' is not a number"),
        (["--eval-epsilons", "0.1,,0.2"], "--eval-epsilons"),
        (["--eval-epsilons", "0.1,2"], "--eval-epsilons: '0.1,2': must be from 1/255"),
        (["--eval-epsilons", "0.1,1e400"], "--eval-epsilons"),
        (["--seed", "-1"], "--seed: must be from 0 to 4294967295"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_write_nothing(step, args, fragment, tmp_path):
    result = call(step, *args, "--output-dir", tmp_path / "out")
    assert result.returncode == 2
    assert_clean_error(result, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("step", "args", "fragment"),
    [
        (step7, ["--method", "sgd"], "--method: invalid choice"),
        (step8, ["--labels", "0"], "--labels: must be from 1 to 1000"),
        (step8, ["--labels", "500"], "--labels 500: must leave some digits unlabelled"),
    ],
)
def test_bad_options_of_each_step(step, args, fragment, tmp_path):
    assert_clean_error(call(step, *args, "--output-dir", tmp_path / "out"), fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("real", [True, False], ids=["step 7, real command", "step 8"])
def test_the_real_command_refuses_an_unwritable_folder(real, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    if real:
        result = run_script("step_7_adversarial_training.py", "--output-dir", blocker / "out")
    else:
        result = call(step8, "--output-dir", blocker / "out")
    assert_clean_error(result, "cannot write to folder", str(blocker / "out"))
    assert files_in(tmp_path) == [blocker]
