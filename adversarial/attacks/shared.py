"""What every attack shares: the images it may return, the straight-through pass, the score.

An attack here works on what can really be saved. Each step the model sees the image as
an 8-bit PNG would hold it, rounded to the nearest level and still inside the epsilon
ball (`LinfBall.saved`), with the gradient passed straight through the rounding. Optional
defenses (e.g. JPEG) are applied in the forward pass the same way (BPDA, Athalye et al.
2018). So "the attack succeeded" means "the PNG you save fools the model".
"""

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Pixels of images read from 8-bit files are k/255 in float32: k to within far less than this.
LEVEL_TOLERANCE = 1e-3


def quantize(x):
    """Nearest 8-bit level: what saving as PNG (with rounding, not truncation) keeps."""
    return (x * 255).round_().div_(255)  # in place on the one new tensor: fewer allocations


class LinfBall:
    """The images an L-inf attack on x may produce: within epsilon of x, pixels in [0, 1].

    `saved` rounds to the 8-bit grid without leaving the ball: with epsilon = 0.01 (2.55
    levels) a pixel may move 2 levels, never 3, so the bound holds on the saved file.
    """

    def __init__(self, x, epsilon):
        self.x, self.epsilon = x, epsilon
        levels = x * 255
        self.lowest = ((levels - epsilon * 255 - LEVEL_TOLERANCE).ceil() / 255).clamp_(min=0)
        self.highest = ((levels + epsilon * 255 + LEVEL_TOLERANCE).floor() / 255).clamp_(max=1)

    def project(self, delta):
        """delta back into the ball, with x + delta a valid image; returns the new delta."""
        return (self.x + delta.clamp(-self.epsilon, self.epsilon)).clamp_(0, 1).sub_(self.x)

    def saved(self, x_adversarial):
        """What the PNG of x_adversarial holds: the nearest 8-bit level inside the ball."""
        return quantize(x_adversarial).clamp_(self.lowest, self.highest)


class L2Ball:
    """The images an L2 attack on x may produce: within L2 distance epsilon of x (each image
    on its own), pixels in [0, 1]. x must be on the 8-bit grid.

    `saved` rounds every pixel's change toward zero, in whole 8-bit levels: no |delta_i|
    grows, so the L2 norm cannot, and the saved file is still inside the ball (rounding to
    the nearest level could leave it).
    """

    def __init__(self, x, epsilon):
        self.x, self.epsilon = x, epsilon

    def project(self, delta):
        """delta scaled back onto the ball where it is outside, then x + delta clamped to a
        valid image (which only shrinks |delta_i|); returns the new delta."""
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (delta.dim() - 1))
        delta = delta * (self.epsilon / norms).clamp(max=1)
        return (self.x + delta).clamp_(0, 1).sub_(self.x)

    def saved(self, x_adversarial):
        """What the PNG of x_adversarial holds: each change truncated to whole levels."""
        levels = (x_adversarial * 255 - self.x * 255).trunc_()
        return (self.x * 255).round_().add_(levels).clamp_(0, 255).div_(255)


def attack_labels(original, target=None):
    """The labels an attack is given: the target for every image (targeted), or each
    image's own class, to move away from (untargeted, target None)."""
    return original if target is None else torch.full_like(original, target)


def uniform_start(x, epsilon, seed=None):
    """A random point of the L-inf ball around each image: delta uniform in [-eps, eps].

    Seeded, each image draws its own start from the seed and its own pixels, so an image
    gets the same start in any batch, and two different images get different ones.
    """
    if seed is None:  # torch's global generator: a fresh start every time
        return torch.empty_like(x).uniform_(-epsilon, epsilon)
    starts = []
    for image in x:
        generator = image_generator(seed, image)
        starts.append(torch.empty(image.shape).uniform_(-epsilon, epsilon, generator=generator))
    return torch.stack(starts).to(x.device)


def image_generator(seed, image):
    """A CPU generator seeded by `seed` and the image's own 8-bit pixels: an image draws
    the same numbers in any batch, and two different images draw different ones."""
    digest = hashlib.sha256(f"{seed}:".encode() + quantize(image).cpu().numpy().tobytes())
    return torch.Generator().manual_seed(int.from_bytes(digest.digest()[:8], "little"))


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(x, transform):
        return transform(x.detach())

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(x, transform):
    """transform(x) in the forward pass, identity in the backward pass (BPDA)."""
    return _StraightThrough.apply(x, transform)


def input_gradient(loss, x):
    """The gradient of loss.sum() with respect to x; zero where autograd sees no path from
    x to the loss. A model that detaches its input, or computes it by comparisons (a
    thermometer encoding), has no graph: the attack is blind there, and goes on blind,
    rather than crash. The audit's gradient check says so."""
    if not loss.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def mean_cross_entropy(logits, labels):
    """(N,) cross-entropy to `labels`, the mean over every model and view in `logits`."""
    losses = [F.cross_entropy(view, labels, reduction="none") for view in logits]
    return torch.stack(losses).mean(0)


@dataclass
class AttackResult:
    adversarial: torch.Tensor  # (N, C, H, W) as saved: on the 8-bit grid, within epsilon of x
    success: torch.Tensor  # (N,) bool: every model and view classifies it as wanted
    steps: torch.Tensor  # (N,) gradient steps (a query attack: queries) until success or budget
    probabilities: torch.Tensor  # (N, classes) for the adversarial image (first model, as saved)
    best_probability: torch.Tensor  # (N,) best probability of success reached on the way
    views_fooled: torch.Tensor  # (models x views, N) bool: which model and view was fooled


class Scoreboard:
    """Who is fooled, since which step, what each image looked like then, and the best
    probability of success seen so far. An attack records every forward pass it makes.

    targeted: fooled means classified as `labels`; otherwise as anything but `labels`.
    early_stop: keep each image as it was when first fooled, and end the attack once all
    are; otherwise keep the last iterate of every image (as in adversarial training).
    on_step(step, loss, predicted): per-image loss (N,) and classes (models x views, N).
    """

    def __init__(self, x, labels, targeted, steps, early_stop=True, on_step=None):
        self.labels, self.targeted, self.steps = labels, targeted, steps
        self.early_stop, self.on_step = early_stop, on_step
        n = len(x)
        self.adversarial = torch.empty_like(x)
        self.success = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.taken = torch.full((n,), steps, device=x.device)
        self.best_probability = torch.zeros(n, device=x.device)
        self.probabilities = None
        self.views_fooled = None

    @torch.no_grad()
    def record(self, step, x_saved, logits, loss):
        """Score one forward pass of the images x_saved; True when the attack may stop
        (early stopping, and every image fooled)."""
        p = logits.softmax(-1)  # (models x views, N, classes)
        predicted = p.argmax(-1)
        fooled = predicted == self.labels if self.targeted else predicted != self.labels
        self.best_probability = torch.maximum(self.best_probability, self._success_p(p))
        if self.on_step:
            self.on_step(step, loss.detach(), predicted)
        last = step == self.steps
        if self.early_stop:
            keep = (fooled.all(0) | last) & ~self.success
            self.success |= fooled.all(0)
        else:
            keep = torch.full_like(self.success, last)
            if last:
                self.success = fooled.all(0)
        if keep.any():
            if self.probabilities is None:
                self.probabilities = torch.zeros_like(p[0])
                self.views_fooled = torch.zeros_like(fooled)
            self.adversarial[keep] = x_saved[keep]
            self.probabilities[keep] = p[0, keep]
            self.views_fooled[:, keep] = fooled[:, keep]
            self.taken[keep] = step
        return self.early_stop and bool(self.success.all())

    @torch.no_grad()
    def verdict(self, x_final, logits):
        """Judge the last iterate (after the last step), and return the result."""
        self.record(self.steps, x_final, logits, mean_cross_entropy(logits, self.labels))
        return self.result()

    def result(self):
        return AttackResult(
            self.adversarial,
            self.success,
            self.taken,
            self.probabilities,
            self.best_probability,
            self.views_fooled,
        )

    def _success_p(self, p):
        """Per image, over the views: the probability of the target (targeted), or of
        anything but the original class (untargeted); the weakest view counts."""
        p_label = p.gather(-1, self.labels.expand(p.shape[:2])[..., None])[..., 0]
        return (p_label if self.targeted else 1 - p_label).amin(0)
