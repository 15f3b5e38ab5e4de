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
from adversarial.attacks.shared import L2Ball, quantize

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


def test_the_l2_ball_rounds_toward_zero_where_the_nearest_level_would_leave_it(data):
    """Every pixel moved 0.6 of a level, the ball's radius exactly that: rounding to the
    nearest level makes each move a whole level and leaves the ball; rounding toward
    zero never does."""
    _, _, x_test, _ = data
    x = x_test[:20]
    radius = 0.6 / 255 * 8  # 64 pixels of 0.6 levels
    ball = L2Ball(x, radius)
    signs = torch.randn(x.shape, generator=torch.Generator().manual_seed(SEED)).sign()
    delta = ball.project(signs * 0.6 / 255)
    nearest = quantize(x + delta)
    assert ((nearest - x).flatten(1).norm(dim=1) > radius * 1.2).all()  # this test can tell
    saved = ball.saved(x + delta)
    assert ((saved - x).flatten(1).norm(dim=1) <= radius + 1e-6).all()


def test_an_image_certified_at_twice_the_radius_keeps_its_class_under_attack(model, data):
    """A certificate at radius R promises g(x + delta) = its class for every
    ||delta|| < R. Where R >= 2r, the top class keeps probability at least Phi(r / sigma)
    = 0.84 at r = sigma (Cohen et al.'s Theorem 1), so a vote of 100 copies after L2 PGD
    at radius r must still give that class; an attack that beats it, or a radius
    overstated, fails here. Images certified only at a smaller radius are not judged."""
    _, _, x_test, _ = data
    x = x_test[:12]
    torch.manual_seed(SEED)
    classes, radii = smoothing.certify_all(model, x, SIGMA, 20, 1000, 0.001)
    r = SIGMA
    sure = radii >= 2 * r
    assert sure.any()  # at N = 1000 the ceiling is 2.46 sigma: some digits reach 2 sigma
    attack = PGDL2(smoothing.SmoothedSoftmax(model, SIGMA, 8), r, 5, targeted=False)
    adversarial = attack(x[sure], classes[sure]).adversarial
    assert ((adversarial - x[sure]).flatten(1).norm(dim=1) <= r + 1e-6).all()
    for image, label in zip(adversarial, classes[sure], strict=True):
        assert smoothing.top_class(model, image, SIGMA, 100) == label


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


# Bad input and faults (issue 30).


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "0.51"], "--alpha: must be a number above 0, at most 0.5, got 0.51"),
        (["--alpha", "nan"], "--alpha: must be a number above 0"),
        (["--sigmas", "0.25,1e308"], "--sigmas: '0.25,1e308': must be a number above 0, at most 4"),
        (["--sigmas", "inf"], "--sigmas: 'inf': must be a number above 0"),
    ],
)
def test_options_no_run_could_use_are_refused_before_training(tmp_path, args, message):
    code, out, err = call(step12, *args, "--output-dir", tmp_path)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert files_in(tmp_path) == []


def digests(folder):
    return {path.name: path.read_bytes() for path in files_in(folder)}


def test_a_run_stopped_after_training_leaves_the_previous_run_whole(tmp_path, monkeypatch):
    """The weights are written with the certificates, all or nothing (as step 7 writes its
    plot with its models): never new weights beside the previous run's table."""
    for name in ["digits_noise_0.25.pth", "smoothing.csv", "smoothing.png"]:
        (tmp_path / name).write_bytes(b"the previous run's " + name.encode())
    before = digests(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(smoothing, "certify_all", interrupted)
    code, _, err = call(step12, "--sigmas", "0.25", "--epochs", "1", "--output-dir", tmp_path)
    assert code == 130 and err.endswith("interrupted\n")
    assert digests(tmp_path) == before


def test_sigmas_one_decimal_apart_get_their_own_files_and_columns(capsys):
    assert {smoothing.sigma_name(s) for s in (0.1, 0.1000001)} == {"0.1", "0.1000001"}
    assert smoothing.sigma_name(0.12) == "0.12" and smoothing.sigma_name(1.0) == "1"
    certified = {s: (torch.tensor([3]), torch.tensor([0.1])) for s in (0.1, 0.1000001)}
    empirical = {s: [1.0] for s in certified}
    smoothing.report(certified, empirical, torch.tensor([3]), [0.0], 100, 0.001, ["a", "b"])
    header = capsys.readouterr().out.splitlines()[1]
    assert "sigma 0.1 certified" in header and "sigma 0.1000001 certified" in header


@pytest.mark.parametrize(("n", "alpha"), [(1, 0.001), (100, 1e-300)])
def test_no_ceiling_below_zero_when_no_radius_can_be_certified(capsys, tmp_path, n, alpha):
    certified = {0.25: (torch.tensor([smoothing.ABSTAIN]), torch.tensor([0.0]))}
    files = [tmp_path / "smoothing.png", tmp_path / "smoothing.csv"]
    smoothing.report(certified, {0.25: [0.0]}, torch.tensor([3]), [0.0], n, alpha, files)
    line = capsys.readouterr().out.splitlines()[-1]
    assert line == f"sigma 0.25: abstained on 100.0%; no radius can be certified with N = {n} " + (
        f"and alpha = {alpha:g}"
    )
