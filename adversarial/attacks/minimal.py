"""Minimal perturbations: no budget epsilon, the smallest change that fools the model, in
the measure each attack minimises.

    DeepFool(model)(x, labels)            # L2; norm=math.inf for L-inf (Moosavi-Dezfooli 2016)
    CarliniWagnerL2(model)(x, labels)     # L2 (Carlini and Wagner 2017)
    GreedyPixels(model)(x, labels)        # L0: a few pixels, each moved as far as it goes

Each returns a MinimalResult: by default the example as floats, where the papers stop. A
minimal example sits just past the decision boundary, and saving it as a PNG rounds every
pixel by up to half a level, which can push it back. With grid=True the model sees each
iterate as its PNG would hold it (rounded, the gradient passed straight through, as for
every budget attack here), so the attack goes on until the saved image fools. `fools`
judges any images; `sizes` measures a change.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from adversarial.attacks.shared import quantize, straight_through
from adversarial.models import device_of

# A pixel channel moved by more than this counts as changed (one 8-bit level is 1/255).
CHANGED = 1e-6
# The authors' code adds this to each DeepFool step, so that it lands past the boundary.
DEEPFOOL_NUDGE = 1e-4


def margin(logits, labels, targeted):
    """(N,) how far each image is from fooling the model, in logits: untargeted, the label's
    logit minus the largest other; targeted, the largest other minus the target's. Below
    zero: fooled (Carlini and Wagner's f6, before its clamp at -kappa)."""
    z_label = logits.gather(1, labels[:, None])[:, 0]
    z_other = logits.scatter(1, labels[:, None], -math.inf).amax(1)
    return z_other - z_label if targeted else z_label - z_other


def fooled(logits, labels, targeted):
    """(N,) bool: the model's answer (the top logit, the first of equal ones, as every step
    reads it) is the target (targeted), or anything but the label (untargeted). A tie is
    judged as the model answers it: constant logits answer class 0."""
    predicted = logits.argmax(1)
    return predicted == labels if targeted else predicted != labels


@torch.inference_mode()
def fools(model, images, labels, targeted):
    """(N,) bool: the model classifies each image as the target (targeted), or as anything
    but its label (untargeted)."""
    images, labels = images.to(device_of(model)), labels.to(device_of(model))
    return fooled(model(images), labels, targeted)


class Sizes(NamedTuple):
    """How big each change is, per image (N,): the three measures, and DeepFool's rho."""

    l2: torch.Tensor  # the energy of the change, in pixels of [0, 1]
    linf: torch.Tensor  # the largest change of one pixel channel
    l0: torch.Tensor  # how many pixels (positions, any channel) changed
    rho: torch.Tensor  # ||r||_2 / ||x||_2, the paper's robustness measure


def sizes(x, x_adversarial):
    """Sizes of x_adversarial - x, for images (N, C, H, W)."""
    r = (x_adversarial - x).flatten(2)  # (N, C, H * W)
    l2 = r.flatten(1).norm(dim=1)
    return Sizes(
        l2,
        r.abs().flatten(1).amax(1),
        (r.abs() > CHANGED).any(1).sum(1),
        l2 / x.flatten(1).norm(dim=1),
    )


@dataclass
class MinimalResult:
    adversarial: torch.Tensor  # (N, C, H, W) in [0, 1]; on the 8-bit grid if grid=True
    success: torch.Tensor  # (N,) bool: it fools the model (False where `already`)
    already: torch.Tensor  # (N,) bool: the image itself already fools it (nothing to do)
    gradients: torch.Tensor  # (N,) backward passes spent on each image


class DeepFool:
    """DeepFool (Moosavi-Dezfooli, Fawzi and Frossard 2016, Algorithm 2): linearise the
    model at the current point, step onto the nearest linearised boundary between the class
    to leave and a class to reach, and repeat until the class changes. The steps' sum r is
    scaled by 1 + overshoot (the paper's 0.02) to land just past the boundary.

    With f'_k = f_k - f_leave and w'_k its gradient, the nearest class is the l with the
    least |f'_l| / ||w'_l||, and the step goes straight to its boundary: along w'_l in L2
    (norm=2), along sign(w'_l) in L-inf (norm=inf, the dual norm being L1; section 3.3).

    Untargeted: leave the label, reach any of the `candidates` other classes the model
    ranks highest on the clean image (the authors' code: the top 10 with the label, so 9
    others). Targeted: reach the label, leaving whichever class the model sees now.
    x + r stays in [0, 1].
    """

    def __init__(
        self, model, norm=2, steps=50, overshoot=0.02, candidates=9, targeted=False, grid=False
    ):
        if norm not in (2, math.inf):
            raise ValueError(f"norm must be 2 or math.inf, got {norm}")
        self.model, self.norm, self.steps = model, norm, steps
        self.overshoot, self.candidates, self.targeted = overshoot, candidates, targeted
        self.grid = grid

    def __call__(self, x, labels):
        x, labels = x.to(device_of(self.model)), labels.to(device_of(self.model))
        with torch.no_grad():
            clean_logits = self.model(x)
        already = fooled(clean_logits, labels, self.targeted)
        reach = self.classes_to_reach(clean_logits, labels)  # (N, K)
        active = ~already
        r = torch.zeros_like(x)
        gradients = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for _ in range(self.steps):
            x_i = (x + (1 + self.overshoot) * r).clamp(0, 1).requires_grad_(True)
            logits = self.model(self.seen(x_i))
            active &= ~fooled(logits.detach(), labels, self.targeted)
            if not active.any():
                break
            leave = logits.detach().argmax(1) if self.targeted else labels
            f, w = self.linearised(x_i, logits, leave, reach)
            gradients += active * (reach.shape[1] + 1)
            r = r + self.step_to_nearest(f, w) * active.view(-1, 1, 1, 1)
        x_adversarial = self.seen((x + (1 + self.overshoot) * r).clamp(0, 1))
        success = fools(self.model, x_adversarial, labels, self.targeted) & ~already
        return MinimalResult(x_adversarial.detach(), success, already, gradients)

    def seen(self, x_i):
        """What the model is shown: x_i, or with grid=True its PNG (BPDA through rounding)."""
        return straight_through(x_i, quantize) if self.grid else x_i

    def classes_to_reach(self, clean_logits, labels):
        if self.targeted:
            return labels[:, None]
        others = clean_logits.scatter(1, labels[:, None], -math.inf)
        return others.topk(min(self.candidates, others.shape[1] - 1), dim=1).indices

    @staticmethod
    def linearised(x_i, logits, leave, reach):
        """f'_k (N, K) and w'_k (N, K, C, H, W) for each class k to reach: one backward pass
        per class, and one for the class to leave."""

        def gradient(classes):
            (grad,) = torch.autograd.grad(
                logits.gather(1, classes[:, None]).sum(), x_i, retain_graph=True
            )
            return grad

        leave_gradient = gradient(leave)
        w = torch.stack([gradient(k) - leave_gradient for k in reach.unbind(1)], dim=1)
        f = logits.gather(1, reach) - logits.gather(1, leave[:, None])
        return f.detach(), w

    def step_to_nearest(self, f, w):
        dual = 2 if self.norm == 2 else 1
        w_norms = w.flatten(2).norm(p=dual, dim=2).clamp_min(1e-12)  # (N, K)
        distances = f.abs() / w_norms
        nearest = distances.argmin(1)
        rows = torch.arange(len(f), device=f.device)
        distance, w_l = distances[rows, nearest] + DEEPFOOL_NUDGE, w[rows, nearest]
        if self.norm == 2:  # along w'_l, of L2 norm `distance`
            return distance.view(-1, 1, 1, 1) * w_l / w_norms[rows, nearest].view(-1, 1, 1, 1)
        return distance.view(-1, 1, 1, 1) * w_l.sign()  # every channel by `distance`


class CarliniWagnerL2:
    """Carlini and Wagner's L2 attack (2017): minimise ||delta||_2^2 + c * f(x + delta) with
    Adam, over w, where x + delta = (tanh(w) + 1) / 2 is always a valid image, and
    f = max(margin, -kappa): the logit margin (`margin`), clamped once it is kappa past
    the boundary.

    c trades size against success, and is found per image by a binary search: c times 10
    while the attack fails, then halfway between the largest c that failed and the smallest
    that succeeded. Of every iterate that fools the model, the smallest is kept.

    The authors' code: 9 searches of 10,000 steps from c = 1e-3, each search ended early
    once its loss stops falling (checked every tenth of the steps). Here, to fit the time:
    5 searches of 100 steps from c = 1e-2, never ended early (a check every 10 steps ended
    them too soon: on the coffee photo, L2 1.02 instead of 0.66).

    on_step(step, loss, predicted), if given, is called after every Adam step (counted
    over all searches, from 1): per-image loss (N,) and classes (N,), as for PGD.
    """

    def __init__(
        self,
        model,
        searches=5,
        steps=100,
        lr=0.01,
        initial_c=1e-2,
        kappa=0.0,
        targeted=False,
        grid=False,
        on_step=None,
    ):
        self.model, self.searches, self.steps, self.lr = model, searches, steps, lr
        self.initial_c, self.kappa, self.targeted = initial_c, kappa, targeted
        self.grid, self.on_step = grid, on_step

    def __call__(self, x, labels):
        x, labels = x.to(device_of(self.model)), labels.to(device_of(self.model))
        n = len(x)
        w_of_x = torch.atanh((2 * x - 1) * (1 - 1e-6))  # tanh's inverse, kept finite at 0 and 1
        c = torch.full((n,), self.initial_c, device=x.device)
        lowest_success = torch.full((n,), math.inf, device=x.device)
        highest_failure = torch.zeros(n, device=x.device)
        best_l2, best = torch.full((n,), math.inf, device=x.device), x.clone()
        already = fools(self.model, x, labels, self.targeted)
        gradients = torch.zeros(n, dtype=torch.long, device=x.device)
        for search in range(self.searches):
            w = w_of_x.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            for step in range(self.steps):
                x_new = (torch.tanh(w) + 1) / 2
                if self.grid:  # its PNG, the gradient straight through the rounding
                    x_new = straight_through(x_new, quantize)
                logits = self.model(x_new)
                l2_squared = (x_new - x).pow(2).flatten(1).sum(1)
                m = margin(logits, labels, self.targeted)
                loss = l2_squared + c * m.clamp(min=-self.kappa)  # per image
                with torch.no_grad():  # keep the smallest example that fools, as it was
                    done = (m <= -self.kappa) & fooled(logits, labels, self.targeted) & ~already
                    smaller = done & (l2_squared.sqrt() < best_l2)
                    best_l2 = torch.where(smaller, l2_squared.sqrt(), best_l2)
                    best[smaller] = x_new[smaller]
                    succeeded |= done
                optimizer.zero_grad()
                loss.sum().backward()
                optimizer.step()
                gradients += ~already  # every image attacked takes every step
                if self.on_step:
                    step_count = search * self.steps + step + 1
                    self.on_step(step_count, loss.detach(), logits.argmax(1))
            lowest_success = torch.where(
                succeeded, torch.minimum(lowest_success, c), lowest_success
            )
            highest_failure = torch.where(
                succeeded, highest_failure, torch.maximum(highest_failure, c)
            )
            bracketed = lowest_success < math.inf
            c = torch.where(bracketed, (highest_failure + lowest_success) / 2, c * 10)
        return MinimalResult(best, best_l2 < math.inf, already, gradients)


class GreedyPixels:
    """An L0 attack: change as few pixels as it can, each as far as it goes. Each step
    linearises the margin at the current image and moves the `pixels_per_step` unchanged
    pixels whose move lowers it most: every channel to 0 or to 1, against its gradient
    (the gain -gradient . change, summed over the channels). Until the model is fooled,
    or `max_pixels` have changed.

    In the spirit of JSMA (Papernot et al. 2016), which also ranks pixels by the gradient,
    but simpler: one gradient of the margin, all channels of a pixel at once. Every change
    is to 0 or 1, which an 8-bit file holds exactly: no rounding to undo it.
    """

    def __init__(self, model, pixels_per_step=1, max_pixels=100, targeted=False):
        self.model, self.pixels_per_step = model, pixels_per_step
        self.max_pixels, self.targeted = max_pixels, targeted

    def __call__(self, x, labels):
        x, labels = x.to(device_of(self.model)), labels.to(device_of(self.model))
        x_adversarial = x.clone()
        changed = torch.zeros_like(x[:, :1], dtype=torch.bool)  # (N, 1, H, W)
        already = fools(self.model, x, labels, self.targeted)
        active = ~already
        gradients = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for _ in range(math.ceil(self.max_pixels / self.pixels_per_step)):
            x_adversarial.requires_grad_(True)
            logits = self.model(x_adversarial)
            m = margin(logits, labels, self.targeted)
            active &= ~fooled(logits.detach(), labels, self.targeted)
            if not active.any():
                break
            (grad,) = torch.autograd.grad(m.sum(), x_adversarial)
            with torch.no_grad():
                extreme = (grad < 0).to(x.dtype)  # up where raising a channel lowers the margin
                gain = (grad * (x_adversarial - extreme)).sum(1, keepdim=True)
                gain[changed] = -math.inf
                top = gain.flatten(1).topk(self.pixels_per_step, dim=1)
                # The best untouched pixels, no more than the budget has room for.
                room = self.max_pixels - changed.flatten(1).sum(1, keepdim=True)
                rank = torch.arange(self.pixels_per_step, device=x.device)
                within = (rank < room) & (top.values > -math.inf) & active[:, None]
                picked = torch.zeros_like(changed.flatten(1)).scatter_(1, top.indices, within)
                picked = picked.view_as(changed)
                x_adversarial = torch.where(picked, extreme, x_adversarial)
                changed |= picked
                gradients += active
        x_adversarial = x_adversarial.detach()
        success = fools(self.model, x_adversarial, labels, self.targeted) & ~already
        return MinimalResult(x_adversarial, success, already, gradients)
