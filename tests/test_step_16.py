"""Step 16: the camera's transformations keep pixels in [0, 1] and pass the gradient; EOT
beats plain PGD under fresh transformations (measured here, on a tiny setting); the step's
PNGs stay within epsilon and its rates are those of the saved files; seeds reproduce."""

import csv

import pytest
import torch
import torch.nn.functional as F
from conftest import LITE0, assert_clean_error, call, files_in, succeeded

import step_16_physical
from adversarial.attacks import PGD
from adversarial.attacks.eot import EOT
from adversarial.models import load_model, predict
from adversarial.physical import fresh_generator
from adversarial.plumbing.images import load_image_tensor
from adversarial.plumbing.samples import sample_photo
from adversarial.transforms import Camera, CameraTransform

GOLDFISH = 1


def test_every_transformation_keeps_pixels_in_range_and_passes_the_gradient():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=generator)
    x[0, :, :8] = 1.0  # white and black where brightness and contrast push hardest
    x[1, :, :8] = 0.0
    extremes = [
        CameraTransform(brightness=1.2, contrast=1.2),
        CameraTransform(brightness=0.8, contrast=0.8, blur=1.0, quality=60),
    ]
    camera = Camera()
    for t in extremes + [camera.sample(generator) for _ in range(6)]:
        image = x.clone().requires_grad_(True)
        y = t(image)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1, t
        (grad,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), image)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, t


def test_the_differentiable_steps_have_their_true_gradient_and_jpeg_passes_it_through():
    generator = torch.Generator().manual_seed(1)
    x = (0.2 + 0.6 * torch.rand(1, 3, 12, 12, generator=generator)).double()
    t = CameraTransform(angle=12.0, scale=1.05, shift=(0.1, -0.05), contrast=0.9, blur=0.8)
    for _ in range(3):  # the gradient along a random direction, against finite differences
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        weights = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        image = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((t(image) * weights).sum(), image)
        h = 1e-6
        numeric = ((t(x + h * direction) - t(x - h * direction)) * weights).sum() / (2 * h)
        assert float((grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-5)
    # Through JPEG, the gradient is the one without it (BPDA: identity backward).
    through = CameraTransform(angle=12.0, blur=0.8, quality=70)
    without = CameraTransform(angle=12.0, blur=0.8)
    image = x.float().detach().requires_grad_(True)
    weights = torch.randn(1, 3, 12, 12, generator=generator)
    (g_through,) = torch.autograd.grad((through(image) * weights).sum(), image)
    (g_without,) = torch.autograd.grad((without(image) * weights).sum(), image)
    assert torch.allclose(g_through, g_without)


def test_a_quarter_turn_is_a_rotation_and_the_identity_changes_nothing():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(CameraTransform()(x), x, atol=1e-6)
    turned = CameraTransform(angle=90.0)(x)  # clockwise, about the centre
    assert torch.allclose(turned, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)


def test_the_camera_draws_the_same_photographs_from_the_same_seed_within_its_ranges():
    camera = Camera()
    first = [camera.sample(torch.Generator().manual_seed(5)) for _ in range(1)]
    again = [camera.sample(torch.Generator().manual_seed(5)) for _ in range(1)]
    assert first == again
    generator = torch.Generator().manual_seed(6)
    for t in [camera.sample(generator) for _ in range(50)]:
        assert abs(t.angle) <= camera.max_angle and camera.scale[0] <= t.scale <= camera.scale[1]
        assert max(map(abs, t.shift)) <= camera.shift and camera.blur[1] >= t.blur >= 0
        assert camera.quality[0] <= t.quality <= camera.quality[1]


@pytest.fixture(scope="module")
def small_coffee():
    """The coffee photo at 64x64: every forward pass costs a twelfth of one at 224."""
    return F.interpolate(sample_photo("coffee"), size=64, mode="area")


def test_eot_survives_fresh_photographs_where_plain_pgd_does_not(small_coffee):
    model = load_model("efficientnet_lite0")
    epsilon, target = 16 / 255, torch.tensor([GOLDFISH])
    options = dict(steps=8, step_size=epsilon / 2, seed=0)
    plain = PGD(model, epsilon, early_stop=False, **options)(small_coffee, target)
    eot = EOT(model, epsilon, Camera(), samples=4, **options)(small_coffee, target)
    on_target = {}
    generator = torch.Generator().manual_seed(12345)  # photographs neither attack drew
    photographs = [Camera().sample(generator) for _ in range(20)]
    for name, result in (("plain", plain), ("eot", eot)):
        # On the 8-bit levels a PNG holds: within 16 levels of the photo.
        levels = (result.adversarial * 255).round()
        assert torch.equal(levels / 255, result.adversarial)
        assert (levels - small_coffee * 255).abs().max() <= 16 + 1e-3
        classes = [int(predict(model, t(result.adversarial)).argmax()) for t in photographs]
        on_target[name] = classes.count(GOLDFISH)
    assert on_target["eot"] >= on_target["plain"] + 4, on_target


def test_seeded_eot_is_reproducible(small_coffee):
    model = load_model("efficientnet_lite0")
    x = small_coffee[..., :48, :48]
    runs = [
        EOT(model, 8 / 255, Camera(), 2, 2, seed=seed)(x, torch.tensor([1])) for seed in (3, 3, 4)
    ]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert not torch.equal(runs[0].adversarial, runs[2].adversarial)


TINY = ["--steps", "1", "--samples", "1", "--fresh", "2", "--draws", "1", "--angles", "0"]


def test_the_step_writes_both_pngs_within_epsilon_and_its_rates_are_the_saved_files(
    coffee, tmp_path
):
    args = [coffee, "--target", "goldfish", "--epsilon", "4/255", *TINY, *LITE0]
    lines = succeeded(call(step_16_physical, *args, "--output-dir", tmp_path))
    assert lines[:2] == [
        "coffee.png: espresso",
        "Target: goldfish, Carassius auratus; epsilon 4/255 on the saved PNG",
    ]
    one_change = lines.index("One change at a time: still classified as wanted?")
    assert lines[one_change + 1].split() == ["photograph", "clean", "photo", "plain", "PGD", "EOT"]
    assert lines[one_change + 3].split()[:3] == ["turned", "1", "degree"]
    x = load_image_tensor(coffee)
    saved = {}
    for kind in ("plain", "eot"):
        saved[kind] = load_image_tensor(tmp_path / f"adversarial_{kind}.png")
        assert saved[kind].shape == (1, 3, 224, 224)
        assert ((saved[kind] - x).abs().max() * 255).round() <= 4
    with open(tmp_path / "physical.csv", newline="") as file:
        rows = {row["image"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"clean photo", "plain PGD", "EOT"}
    # The fresh photographs, drawn again from the seed: the shares of the files on disk.
    model = load_model("efficientnet_lite0")
    generator = fresh_generator(0)
    photographs = [Camera().sample(generator) for _ in range(2)]
    espresso = int(predict(model, x).argmax())
    images = {"clean photo": (x, espresso), "plain PGD": (saved["plain"], GOLDFISH)}
    images["EOT"] = (saved["eot"], GOLDFISH)
    for name, (image, wanted) in images.items():
        hits = sum(int(predict(model, t(image)).argmax()) == wanted for t in photographs)
        assert float(rows[name]["share of fresh"]) == pytest.approx(hits / 2)
    assert (tmp_path / "physical.png").stat().st_size > 0


def test_bad_input_is_one_line_and_writes_nothing(coffee, tmp_path):
    assert_clean_error(call(step_16_physical, "--output-dir", tmp_path), "give one image")
    both = call(step_16_physical, coffee, "--photos", "imagenet_01", "--output-dir", tmp_path)
    assert_clean_error(both, "give one image")
    already = call(
        step_16_physical, coffee, "--target", "espresso", *LITE0, "--output-dir", tmp_path
    )
    assert_clean_error(already, "coffee.png is already espresso: pick another --target")
    assert_clean_error(call(step_16_physical, coffee, "--angles", "200"), "-180 to 180")
    assert files_in(tmp_path) == []
