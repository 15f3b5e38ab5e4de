"""Step 17: the bounds hold, the MILP's counterexamples are real (through the network, in
the ball, on the 8-bit grid, in the saved PNG), the three answers are ordered digit by
digit, IBP training certifies more, and the step itself on a tiny setting."""

import csv

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, call, files_in
from PIL import Image

import step_17_verify as step17
from adversarial import digits, three_answers, verify
from adversarial.attacks import PGD
from adversarial.plumbing.images import grey_writer, load_grey

SEED = 0
EPSILON = 0.05

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def standard(data):
    x_train, y_train, _, _ = data
    torch.manual_seed(SEED)
    network = verify.build_network((16, 16))
    return digits.train(network, digits.clean_loss(x_train, y_train), len(x_train), 8, SEED, "s")


def hidden_and_margins(network, x, labels):
    """Every layer's output before its ReLU, and the 9 margins: the values to bound."""
    layers, _ = verify.affine_layers(network, labels)
    values, h = [], x.flatten(1)
    for i, (W, b) in enumerate(layers):
        h = verify.apply(W, h.clamp(min=0) if i else h) + b
        values.append(h)
    return values


@pytest.mark.parametrize("method", [verify.interval_bounds, verify.crown_bounds])
def test_bounds_hold_at_random_points_of_the_box_and_at_pgds_best(standard, data, method):
    _, _, x_test, y_test = data
    x, y = x_test[:8], y_test[:8]
    lower, upper = verify.ball_box(x, EPSILON)
    with torch.no_grad():
        layers, _ = verify.affine_layers(standard, y)
        bounds = method(layers, lower, upper)
        torch.manual_seed(SEED)
        corners = torch.rand(50, *lower.shape) < 0.5  # the box's corners stretch bounds most
        inside = [lower + torch.rand_like(lower) * (upper - lower) for _ in range(50)]
        inside += [torch.where(c, upper, lower) for c in corners]
    pgd = PGD(standard, EPSILON, steps=20, targeted=False, seed=SEED)(x, y).adversarial
    assert ((pgd.flatten(1) >= lower) & (pgd.flatten(1) <= upper)).all()
    for point in [*inside, pgd.flatten(1)]:
        with torch.no_grad():
            values = hidden_and_margins(standard, point, y)
        for value, (low, high) in zip(values, bounds, strict=True):
            assert (value >= low - 1e-5).all() and (value <= high + 1e-5).all()
    # And the bounds are not trivially wide: the clean digit's margins are inside them.
    assert bounds[-1][0].isfinite().all()


def test_a_counterexample_fools_the_network_inside_the_ball_on_the_grid(standard, data, tmp_path):
    _, _, x_test, y_test = data
    found = 0
    for x, y in zip(x_test[:6], y_test[:6], strict=True):
        answer = verify.exact(standard, x, int(y), EPSILON, time_limit=30)
        if answer.verdict != "not robust":
            continue
        found += 1
        image = answer.counterexample
        levels = image * 255
        assert torch.equal(levels, levels.round())  # on the 8-bit grid
        assert (image - x).abs().max() <= EPSILON + 1e-6  # in the ball
        assert image.min() >= 0 and image.max() <= 1
        # Saved and read back, the file's image is the same and is not the label.
        path = tmp_path / f"counterexample_{found}.png"
        grey_writer(image, path)(path)
        saved = load_grey(path)
        assert Image.open(path).mode == "L" and Image.open(path).size == (8, 8)
        assert torch.equal(saved, image)
        with torch.no_grad():
            assert int(standard(saved[None]).argmax(1)) != int(y)
    assert found, "no digit was fooled: the test would check nothing"


def test_pgd_exact_and_relaxations_are_ordered_digit_by_digit(standard, data):
    """certified (either relaxation) => exact robust => not fooled by PGD, for each digit;
    in particular the MILP never calls robust a digit that PGD fooled."""
    _, _, x_test, y_test = data
    x, y = x_test[:10], y_test[:10]
    a = three_answers.answer_all(standard, x, y, EPSILON, 30, SEED)
    verdicts = [answer.verdict for answer in a.exact]
    assert "timeout" not in verdicts
    robust = torch.tensor([v == "robust" for v in verdicts])
    assert not (robust & a.fooled).any()
    for certified in a.certified.values():
        assert not (certified & ~robust).any()
    # Every kind of answer occurs: the orders compare something.
    assert robust.any() and (~robust).any()


def test_ibp_training_certifies_more_than_standard(standard, data):
    x_train, y_train, x_test, y_test = data
    epochs, epsilon = 8, 0.05
    steps = epochs * -(-len(x_train) // digits.BATCH_SIZE)
    torch.manual_seed(SEED)  # standard's initial weights
    network = verify.build_network((16, 16))
    loss = verify.ibp_loss(x_train, y_train, epsilon, steps)
    ibp = digits.train(network, loss, len(x_train), epochs, SEED, "ibp")
    shares = [
        verify.certified(verify.interval_bounds, m, x_test, y_test, epsilon).float().mean()
        for m in (standard, ibp)
    ]
    assert shares[1] > shares[0] + 0.1  # measured: 30% against 1%


def test_the_step_writes_its_csv_and_counterexamples(tmp_path):
    out = tmp_path / "verify"
    args = [
        "--digits-count",
        4,
        "--epochs",
        1,
        "--hidden",
        "8,8",
        "--eval-epsilons",
        "0.05",
        "--epsilon",
        "0.05",
    ]
    result = call(step17, *args, "--bisect", 0, "--output-dir", out)
    assert result.returncode == 0, result.stderr
    with open(out / "verify.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    header = ["model", "digit", "label", "epsilon", "pgd", "exact", "ibp", "linear"]
    assert list(rows[0]) == header
    assert len(rows) == 3 * 4
    _, test_indices = digits.split_indices(SEED)
    assert sorted({int(r["digit"]) for r in rows}) == sorted(test_indices[:4])
    from sklearn.datasets import load_digits

    reference = load_digits()
    pngs = set()
    for r in rows:
        assert r["pgd"] in ("fooled", "not fooled")
        assert r["exact"] in ("robust", "not robust", "timeout")
        assert r["ibp"] in ("certified", "unknown") and r["linear"] in ("certified", "unknown")
        assert int(r["label"]) == reference.target[int(r["digit"])]
        if r["exact"] == "not robust":
            pngs.add(out / f"counterexample_{r['model']}_{r['digit']}.png")
        if r["pgd"] == "fooled":
            assert r["exact"] != "robust"
        if "certified" in (r["ibp"], r["linear"]):
            assert r["exact"] == "robust"
    for path in pngs:
        digit = int(path.stem.rsplit("_", 1)[1])
        clean = np.round(reference.images[digit] / 16 * 255)
        saved = np.array(Image.open(path)).astype(float)
        assert saved.shape == (8, 8) and np.abs(saved - clean).max() <= 0.05 * 255
    names = {p.name for p in files_in(out)}
    assert names == {"verify.csv", "training.png", "training.csv", *(p.name for p in pngs)}
    assert_clean_error(call(step17, "--hidden", "8,x"), "--hidden")


def test_crown_is_below_the_lp_relaxation_below_pgds_margin(standard, data):
    """Per margin: IBP and CROWN <= the LP relaxation of the MILP (given bounds at least
    as tight) <= the margin at PGD's image (a point of the program)."""
    _, _, x_test, y_test = data
    x, y = x_test[:2], y_test[:2]
    pgd = PGD(standard, EPSILON, steps=20, targeted=False, seed=SEED)(x, y).adversarial
    with torch.no_grad():
        layers, _ = verify.affine_layers(standard, y)
        box = verify.ball_box(x, EPSILON)
        crown = verify.crown_bounds(layers, *box)[-1][0]
        ibp = verify.interval_bounds(layers, *box)[-1][0]
        at_pgd = hidden_and_margins(standard, pgd.flatten(1), y)[-1]
    for i in range(2):
        program = verify.encode(standard, x[i], int(y[i]), EPSILON)
        for j in range(9):
            lp = verify.smallest_margin(program, j, relax=True)
            assert max(crown[i, j], ibp[i, j]) <= lp + 1e-5
            assert lp <= at_pgd[i, j] + 1e-5


def test_bisection_finds_where_a_monotone_answer_flips():
    for flip in (1, 2, 37, 255):
        assert three_answers.last_true(lambda k, f=flip: k < f, 0, 256) == flip - 1
