"""adversarial/attacks/: valid 8-bit results within epsilon, the PGD step as written in the papers,
any nn.Module on [0, 1] pixels, and batches judged image by image."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adversarial.attacks import FGSM, PGD, TutorialSGD, quantize
from adversarial.attacks.shared import uniform_start
from adversarial.models import load_model, predict
from adversarial.plumbing.images import load_image_tensor

GOLDFISH, ESPRESSO = 1, 967


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


def tiny_net(seed=0, classes=10):
    """A small network on [0, 1] pixels, with no normalisation wrapper of the project's."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32, classes),
    )  # fmt: skip
    return net.requires_grad_(False)


def is_on_the_8_bit_grid(x):
    return torch.equal(x, torch.round(x * 255) / 255)


@pytest.mark.parametrize("attack", [TutorialSGD, PGD])
def test_result_is_a_valid_8_bit_image_that_fools(lite0, coffee, attack):
    x = load_image_tensor(coffee)
    result = attack(lite0, 2 / 255, steps=30)(x, torch.tensor([GOLDFISH]))
    adversarial = result.adversarial
    assert result.success.item() and 0 < result.steps.item() < 30
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert is_on_the_8_bit_grid(adversarial)
    assert (adversarial - x).abs().max() <= 2 / 255 + 1e-6
    assert predict(lite0, adversarial).argmax().item() == GOLDFISH
    torch.testing.assert_close(result.probabilities, predict(lite0, adversarial))
    # Frozen weights: the attack computed gradients for the image only.
    assert all(p.grad is None and not p.requires_grad for p in lite0.parameters())


def test_fgsm_is_one_signed_step_of_epsilon(lite0, coffee):
    x = load_image_tensor(coffee)
    result = FGSM(lite0, 4 / 255, targeted=False)(x, torch.tensor([ESPRESSO]))
    assert result.steps.item() == 1
    change = ((result.adversarial - x) * 255).round().abs()
    # Every pixel moved by 4 levels, unless it hit 0 or 255 first.
    assert change.max().item() == 4
    assert (change == 4).float().mean() > 0.9


def plain_pgd(model, x, labels, epsilon, step_size, steps):
    """Targeted PGD from zero, written out as in the papers, with the image rounded to 8 bits
    in the forward pass (straight-through: the rounding is skipped in the backward pass)."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        x_adv = x + delta
        x_saved = quantize(x_adv.detach()) + (x_adv - x_adv.detach())
        loss = F.cross_entropy(model(x_saved), labels, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        delta = (delta.detach() - step_size * grad.sign()).clamp(-epsilon, epsilon)
        delta = (x + delta).clamp(0, 1) - x
    return quantize(x + delta)


def random_images(n, seed):
    """Random 16x16 images on the 8-bit grid, as every image read from a file is."""
    return quantize(torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)))


def test_pgd_takes_exactly_the_steps_of_the_plain_loop():
    net = tiny_net()
    x = random_images(4, seed=1)
    labels = torch.tensor([0, 1, 2, 3])
    attack = PGD(net, 8 / 255, steps=10, step_size=2 / 255, random_start=False, early_stop=False)
    result = attack(x, labels)
    assert torch.equal(result.adversarial, plain_pgd(net, x, labels, 8 / 255, 2 / 255, 10))
    assert torch.equal(result.steps, torch.full((4,), 10))
    assert torch.equal(result.success, net(result.adversarial).argmax(1) == labels)


def test_any_module_on_pixels_can_be_attacked_and_each_step_is_reported():
    net = tiny_net()
    x = random_images(2, seed=2)
    seen = []
    attack = PGD(net, 16 / 255, steps=5, seed=0, targeted=False, early_stop=False)
    attack.on_step = lambda step, loss, predicted: seen.append((step, loss.shape, predicted.shape))
    result = attack(x, net(x).argmax(1))
    assert [step for step, _, _ in seen] == [0, 1, 2, 3, 4, 5]  # 5 steps, then the verdict
    # Per image: the loss, and the class seen by each model and view (here one of each).
    assert all(loss == (2,) and predicted == (1, 2) for _, loss, predicted in seen)
    assert is_on_the_8_bit_grid(result.adversarial)
    assert (result.adversarial - x).abs().max() <= 16 / 255 + 1e-6


def test_a_batch_is_judged_image_by_image(lite0, photos):
    """Batch size changes float rounding, so a batch need not take the very same path as
    one image at a time; what must hold is that each verdict is true of its own image."""
    x = torch.cat([load_image_tensor(photos[name]) for name in ("coffee", "chelsea", "rocket")])
    target = torch.full((3,), GOLDFISH)
    result = PGD(lite0, 2 / 255, steps=30, seed=0)(x, target)
    assert result.success.all()
    for i in range(3):
        alone = predict(lite0, result.adversarial[i : i + 1])
        assert alone.argmax().item() == GOLDFISH  # the verdict holds for the image alone
        assert (result.adversarial[i] - x[i]).abs().max() <= 2 / 255 + 1e-6


def test_a_seeded_start_is_the_images_own_whatever_its_batch():
    x = random_images(3, seed=5)
    batch, alone = uniform_start(x, 4 / 255, seed=7), uniform_start(x[1:2], 4 / 255, seed=7)
    assert torch.equal(batch[1], alone[0])  # the same start in any batch
    assert not torch.equal(batch[0], batch[1])  # each image its own start
    assert not torch.equal(batch, uniform_start(x, 4 / 255, seed=8))  # the seed matters
    assert batch.abs().max() <= 4 / 255


def test_untargeted_best_probability_is_how_far_from_the_original_it_got(lite0, coffee):
    x = load_image_tensor(coffee)
    clean = predict(lite0, x)[0, ESPRESSO].item()
    result = FGSM(lite0, 1 / 255, targeted=False)(x, torch.tensor([ESPRESSO]))
    final = result.probabilities[0, ESPRESSO].item()
    best = result.best_probability.item()
    assert best == pytest.approx(max(1 - clean, 1 - final), abs=1e-6)
    assert best > 1 - clean  # the step moved away from the espresso


def test_an_ensembles_loss_is_the_mean_of_its_members_losses():
    nets = [tiny_net(seed) for seed in (1, 2)]
    x = random_images(3, seed=3)
    labels = torch.tensor([4, 5, 6])
    seen = []
    attack = PGD(nets, 8 / 255, steps=1, random_start=False, early_stop=False)
    attack.on_step = lambda step, loss, predicted: seen.append(loss)
    attack(x, labels)
    x_saved = quantize(x)  # the first forward sees the clean image, rounded to 8 bits
    members = [F.cross_entropy(net(x_saved), labels, reduction="none") for net in nets]
    torch.testing.assert_close(seen[0], (members[0] + members[1]) / 2)


def test_an_ensemble_is_fooled_only_when_every_member_is():
    fooled_by_anything, never_fooled = tiny_net(1, classes=2), tiny_net(2, classes=2)
    with torch.no_grad():  # one member answers class 1 whatever the image
        never_fooled[-1].weight.zero_()
        never_fooled[-1].bias.copy_(torch.tensor([0.0, 10.0]))
    x = random_images(2, seed=4)
    target = torch.zeros(2, dtype=torch.long)
    alone = PGD(fooled_by_anything, 1.0, steps=20, seed=0)(x, target)
    both = PGD([fooled_by_anything, never_fooled], 1.0, steps=20, seed=0)(x, target)
    assert alone.success.all()  # the first member alone is easily fooled
    assert not both.success.any() and torch.equal(both.steps, torch.full((2,), 20))


@pytest.mark.parametrize("attack", [TutorialSGD, PGD, FGSM])
@pytest.mark.parametrize("epsilon", [0.01, 3.5 / 255])
def test_the_bound_holds_on_the_saved_image_when_epsilon_is_not_whole_levels(attack, epsilon):
    """0.01 is 2.55 levels: a saved pixel may move 2 levels, never 3 (rounding up would)."""
    net = tiny_net()
    x = random_images(4, seed=6)
    options = {} if attack is FGSM else {"steps": 10}
    result = attack(net, epsilon, targeted=False, early_stop=False, **options)(x, net(x).argmax(1))
    assert is_on_the_8_bit_grid(result.adversarial)
    levels = ((result.adversarial - x) * 255).round().abs()
    assert levels.max() <= int(epsilon * 255)
    if attack is not TutorialSGD:  # signed steps reach the edge of the ball: 2 levels, not 3
        assert levels.max() == int(epsilon * 255)
    assert (result.adversarial - x).abs().max() <= epsilon + 1e-6  # float32, far below a level


def test_the_tutorials_sgd_takes_the_steps_of_torch_optim_sgd():
    """torch.optim.SGD (lr 0.1, momentum 0.1) on r, projected after every step, as the
    tutorial should have done: the attack's saved image is that loop's, rounded."""
    net = tiny_net()
    x = random_images(2, seed=7)
    target = torch.tensor([3, 5])
    epsilon, steps = 6 / 255, 8
    r = torch.zeros_like(x, requires_grad=True)
    optimizer = torch.optim.SGD([r], lr=0.1, momentum=0.1)
    for _ in range(steps):
        x_saved = quantize(x + r.detach()) + (r - r.detach())  # straight through the rounding
        loss = F.cross_entropy(net(x_saved), target, reduction="none").sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            r.copy_((x + r.clamp(-epsilon, epsilon)).clamp(0, 1) - x)
    result = TutorialSGD(net, epsilon, steps, early_stop=False)(x, target)
    assert torch.equal(result.adversarial, quantize(x + r.detach()))
