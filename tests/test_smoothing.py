"""Step 12: randomized smoothing's PREDICT and CERTIFY, the ceiling on certified radii,
noise augmentation, L2 PGD on the 8-bit grid, and the step itself on a tiny setting."""

import pytest
import torch
from conftest import call, files_in
from scipy.stats import beta
from torch import nn

import step_12_smoothing as step12
from adversarial import digits, smoothing
from adversarial.attacks import PGDL2
from adversarial.attacks.shared import L2Ball

SEED = 0
SIGMA = 0.25

pytestmark = pytest.mark.usefixtures("one_thread")


class Constant(nn.Module):
    """A base classifier that answers `label` whatever the noise, and keeps its inputs."""

    def __init__(self, label=3):
        super().__init__()
        self.label, self.inputs = label, []

    def forward(self, x):
        self.inputs.append(x.clone())
        return nn.functional.one_hot(torch.full((len(x),), self.label), 10).float()


@pytest.fixture(scope="module")
def model(data):
    x_train, y_train, _, _ = data
    losses = {"noise": digits.noisy_loss(x_train, y_train, SIGMA)}
    return digits.train_models(losses, x_train, 1, SEED)["noise"]


def test_the_radius_is_sigma_times_phi_inverse_of_the_lower_bound():
    """All 100 of 100 noisy copies agree: the one-sided Clopper-Pearson bound is
    alpha ** (1 / 100) = 10 ** -0.03 = 0.93325, PhiInverse(0.93325) = 1.50048, and the
    radius at sigma 0.5 is 0.75024 (by hand, from a normal table)."""
    torch.manual_seed(SEED)
    label, radius = smoothing.certify(Constant(), torch.zeros(1, 8, 8), 0.5, 10, 100, 0.001)
    assert label == 3
    assert radius == pytest.approx(0.75024, abs=1e-4)
    # The bound is Cohen's: statsmodels' beta method, one-sided at alpha.
    bound = smoothing.lower_confidence_bound(70, 100, 0.001)
    assert bound == pytest.approx(beta.ppf(0.001, 70, 31), abs=1e-9)


def test_too_few_samples_always_abstain():
    """At alpha 0.001 the bound with all N copies agreeing is 0.001 ** (1 / N): 0.464 for
    N = 9, below 1/2, so CERTIFY abstains whatever the classifier; N = 10 gives 0.5012,
    a radius of at most 0.25 * 0.00298 = 0.00074: the ceiling."""
    x = torch.zeros(1, 8, 8)
    assert smoothing.certify(Constant(), x, SIGMA, 10, 9, 0.001) == (smoothing.ABSTAIN, 0.0)
    assert smoothing.radius_ceiling(SIGMA, 9, 0.001) < 0
    label, radius = smoothing.certify(Constant(), x, SIGMA, 10, 10, 0.001)
    assert label == 3 and radius == pytest.approx(smoothing.radius_ceiling(SIGMA, 10, 0.001))
    assert radius < 0.00075
    assert smoothing.predict(Constant(), x, SIGMA, 20, 0.001) == 3  # 20 of 20: p = 2e-6
    assert smoothing.predict(Constant(), x, SIGMA, 9, 0.001) == smoothing.ABSTAIN  # p = 0.004
    # Cohen et al.'s ImageNet setting: N = 100,000, alpha 0.001: 3.81 sigma at most.
    assert smoothing.radius_ceiling(1.0, 100_000, 0.001) == pytest.approx(3.8115, abs=1e-4)


def test_noise_is_drawn_for_every_sample():
    constant = Constant()
    x = torch.full((1, 8, 8), 0.5)
    smoothing.sample_noise(constant, x, SIGMA, 6, batch_size=4)  # two batches: 4, then 2
    copies = torch.cat(constant.inputs)
    assert copies.shape == (6, 1, 8, 8)
    assert torch.cdist(copies.flatten(1), copies.flatten(1)).triu(1)[0, 1:].min() > 0
    noise = copies - x
    assert 0.15 < noise.std() < 0.35  # sigma 0.25, unclamped
    soft = smoothing.SmoothedSoftmax(constant, SIGMA, 3)
    soft(x[None].expand(2, 1, 8, 8))
    pair = constant.inputs[-1]
    assert (
        len(pair) == 6 and not torch.equal(pair[0], pair[1]) and not torch.equal(pair[0], pair[2])
    )


def test_l2_pgd_stays_in_its_ball_on_the_8_bit_grid(model, data):
    _, _, x_test, y_test = data
    x, y = x_test[:20], y_test[:20]
    for epsilon in (0.3, 1.0):
        attack = PGDL2(smoothing.SmoothedSoftmax(model, SIGMA, 4), epsilon, 5, targeted=False)
        adversarial = attack(x, y).adversarial
        levels = adversarial * 255
        assert torch.allclose(levels, levels.round(), atol=1e-3)
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert (adversarial - x).flatten(1).norm(dim=1).max() <= epsilon + 1e-6
        assert (adversarial != x).any()
    # Rounding to the nearest level would leave the ball; the ball's rounding never does.
    ball = L2Ball(x, 0.05)
    delta = ball.project(torch.full_like(x, 0.6 / 255).mul_(torch.randn_like(x).sign()))
    saved = ball.saved(x + delta)
    assert (saved - x).flatten(1).norm(dim=1).max() <= 0.05 + 1e-6


def test_certified_accuracy_never_exceeds_robust_accuracy(model, data):
    _, _, x_test, y_test = data
    x, y = x_test[:12], y_test[:12]
    torch.manual_seed(SEED)
    classes, radii = smoothing.certify_all(model, x, SIGMA, 20, 200, 0.001)
    radius_list = [0.0, 0.25, 0.5]
    empirical = smoothing.empirical_accuracy(model, x, y, SIGMA, radius_list, 4, 3, 50)
    for radius, robust in zip(radius_list, empirical, strict=True):
        assert smoothing.certified_accuracy(classes, radii, y, radius) <= robust


def test_the_step_reproduces_its_table_from_its_own_models(tmp_path):
    tiny = ["--sigmas", "0.25,0.5", "--epochs", "1", "--digits-count", "6", "--n0", "20"]
    tiny += ["--n", "100", "--radii", "0.25", "--pgd-steps", "2", "--noise-samples", "4"]
    code, out, err = call(step12, *tiny, "--output-dir", tmp_path / "a")
    assert code == 0, err
    names = [p.name for p in files_in(tmp_path / "a")]
    weights = ["digits_noise_0.25.pth", "digits_noise_0.5.pth"]
    assert names == [*weights, "smoothing.csv", "smoothing.png"]
    assert "N0 = 20, N = 100, alpha = 0.001, on the first 6 held-out digits" in out
    assert "sigma 0.5: abstained on" in out and "no radius above 0.750 can be" in out
    weights = [tmp_path / "a" / name for name in weights]
    code, again, err = call(step12, *tiny, "--models", *weights, "--output-dir", tmp_path / "b")
    assert code == 0, err
    assert again.replace("/b", "/a") == out  # same seed, same models: the same table


def test_one_weights_file_per_sigma(tmp_path):
    code, _, err = call(step12, "--models", tmp_path / "a.pth", "--output-dir", tmp_path)
    assert code != 0 and "give one file per sigma (3)" in err and "Traceback" not in err


def test_a_network_never_trained_on_noise_loses_its_photos():
    code, out, err = call(step12, "--imagenet", "--sigmas", "0.5", "--copies", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "efficientnet_lite0 on the 20 labelled photos, 1 noisy copies each"
    clean, noisy = lines[2].split(), lines[3].split()
    assert clean[:2] == ["0", "(clean)"] and noisy[0] == "0.5"
    assert int(noisy[1].removesuffix("%")) < int(clean[2].removesuffix("%")) - 40
