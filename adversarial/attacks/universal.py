"""One perturbation for many images: the universal perturbation and the adversarial patch.

    UniversalPerturbation(model, xi)(x)          # v, (1, C, H, W): x_i + v fools most x_i
    UniversalAscent(model, xi)(x)                # the same, by gradient ascent, in batches
    AdversarialPatch(model, side, target)(x)     # a (3, side, side) patch: anywhere -> target

Both are fitted on some images and meant for others; both come back on the 8-bit grid,
as their files hold them.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adversarial.attacks.minimal import DeepFool
from adversarial.attacks.shared import LEVEL_TOLERANCE, quantize
from adversarial.models import device_of
from adversarial.plumbing.progress import progress
from adversarial.transforms import paste_patch, random_placements


@torch.no_grad()  # not inference mode: the classes serve as labels for attacks
def classes(model, x, batch_size=32):
    """(N,) the model's class for each image, a batch at a time."""
    return torch.cat([model(b.to(device_of(model))).argmax(1).cpu() for b in x.split(batch_size)])


def fooling_rate(model, x, v, clean=None):
    """The share of images x whose class changes when v is added (the paper's measure)."""
    clean = classes(model, x) if clean is None else clean
    return (classes(model, (x + v).clamp(0, 1)) != clean).float().mean().item()


def on_grid(v, xi):
    """v rounded to whole 8-bit levels, none beyond xi: x + v is a valid PNG's pixels for
    any x on the grid (after clamping to [0, 1]), within xi of x."""
    levels = math.floor(xi * 255 + LEVEL_TOLERANCE)
    return quantize(v).clamp(-levels / 255, levels / 255)


@dataclass
class UniversalResult:
    v: torch.Tensor  # (1, C, H, W) on the 8-bit grid, |v| <= xi
    fooling_rates: list  # on the fitting images, after each pass (v on the grid)
    gradients: int  # backward passes spent (DeepFool's, over all images and passes)


class UniversalPerturbation:
    """Universal adversarial perturbations (Moosavi-Dezfooli, Fawzi, Fawzi and Frossard,
    CVPR 2017, Algorithm 1), in L-inf:

        v = 0
        while the fooling rate on the fitting images X is below 1 - delta:
            for each x_i in X (shuffled), if x_i + v is not yet fooled:
                dv_i = the minimal step that fools x_i + v (DeepFool)
                v = the projection of v + dv_i onto the L-inf ball of radius xi

    As in the authors' code, DeepFool's step is the L2 one (overshoot 0.02) and the
    projection clips each pixel to [-xi, xi]. "Fooled" means the class differs from the
    model's class for the clean x_i. The loop is sequential by construction: each image's
    step starts from the v the previous one left. At most `passes` passes over X.
    """

    def __init__(self, model, xi, delta=0.2, passes=5, candidates=9, seed=0):
        self.model, self.xi, self.delta, self.passes = model, xi, delta, passes
        self.deepfool = DeepFool(model, norm=2, candidates=candidates)
        self.seed = seed

    def __call__(self, x):
        generator = torch.Generator().manual_seed(self.seed)
        clean = classes(self.model, x)
        v = torch.zeros_like(x[:1])
        rates, gradients = [], 0
        for _ in progress(range(self.passes), "Algorithm 1", unit="pass"):
            for i in torch.randperm(len(x), generator=generator).tolist():
                x_i = (x[i : i + 1] + v).clamp(0, 1)
                step = self.deepfool(x_i, clean[i : i + 1])  # nothing to do if already fooled
                gradients += int(step.gradients.sum())
                if not step.already.item():
                    v = (v + step.adversarial.cpu() - x_i).clamp(-self.xi, self.xi)
            rates.append(fooling_rate(self.model, x, on_grid(v, self.xi), clean))
            if rates[-1] >= 1 - self.delta:
                break
        return UniversalResult(on_grid(v, self.xi), rates, gradients)


class UniversalAscent:
    """The gradient-ascent form of the same goal (as in Shafahi et al.'s SGD-UAP, 2020):
    rather than one image's minimal step at a time, one step for all the fitting images at
    once, up the gradient of their summed loss, projected onto the L-inf ball:

        v = 0
        repeat `steps` times:
            v = clip(v + alpha * sign(grad_v sum_i min(CE(f(x_i + v), k(x_i)), cap)), -xi, xi)

    k(x_i) is the model's class for the clean x_i; each image's cross-entropy is capped, so
    the images fooled with confidence stop pulling and the others get the step. Every fitting
    image is in every forward pass (in batches of `batch_size`).
    """

    def __init__(self, model, xi, steps=10, alpha=None, cap=9.0, batch_size=32):
        self.model, self.xi, self.steps, self.cap = model, xi, steps, cap
        self.alpha = xi / 4 if alpha is None else alpha
        self.batch_size = batch_size

    def __call__(self, x):
        device = device_of(self.model)
        clean = classes(self.model, x)
        v = torch.zeros_like(x[:1]).to(device)
        rates = []
        for _ in progress(range(self.steps), "universal v", unit="step"):
            v.requires_grad_(True)
            grad = torch.zeros_like(v)
            for batch, labels in zip(
                x.split(self.batch_size), clean.split(self.batch_size), strict=True
            ):
                logits = self.model((batch.to(device) + v).clamp(0, 1))
                loss = F.cross_entropy(logits, labels.to(device), reduction="none")
                (batch_grad,) = torch.autograd.grad(loss.clamp(max=self.cap).sum(), v)
                grad += batch_grad
            v = (v.detach() + self.alpha * grad.sign()).clamp(-self.xi, self.xi)
            rates.append(fooling_rate(self.model, x, on_grid(v.cpu(), self.xi), clean))
        return UniversalResult(on_grid(v.cpu(), self.xi), rates, self.steps * len(x))


@dataclass
class PatchResult:
    patch: torch.Tensor  # (3, side, side) on the 8-bit grid
    success: list  # per step: the share of the step's pasted images classified as the target


class AdversarialPatch:
    """The adversarial patch (Brown, Mane, Roy, Abadi and Gilmer 2017): the pixels p of a
    square patch that maximise E[log P(target | A(p, x, t))] over the fitting images x and
    random placements t (location, scale and rotation): the expectation over transformation.

    Each step pastes the patch on every fitting image `per_image` times, at fresh random
    placements, in one forward pass (bilinear, for smooth gradients), and takes an Adam
    step of the patch, kept in [0, 1].
    """

    def __init__(
        self, model, side, target, steps=150, per_image=2, lr=0.05, scales=(0.8, 1.0), seed=0
    ):
        self.model, self.side, self.target, self.steps = model, side, target, steps
        self.per_image, self.lr, self.scales, self.seed = per_image, lr, scales, seed

    def __call__(self, x):
        generator = torch.Generator().manual_seed(self.seed)
        device = device_of(self.model)
        patch = torch.rand(3, self.side, self.side, generator=generator).to(device)
        patch.requires_grad_(True)
        optimizer = torch.optim.Adam([patch], lr=self.lr)
        photos = x.to(device).repeat(self.per_image, 1, 1, 1)
        target = torch.full((len(photos),), self.target, device=device)
        success = []
        for _ in progress(range(self.steps), "patch", unit="step"):
            placements = random_placements(
                len(photos), self.side, generator, self.scales, size=x.shape[-1]
            )
            logits = self.model(paste_patch(photos, patch, placements, "bilinear"))
            loss = F.cross_entropy(logits, target)  # -mean log P(target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                patch.clamp_(0, 1)
            success.append((logits.argmax(1) == target).float().mean().item())
        return PatchResult(quantize(patch.detach()).cpu(), success)
