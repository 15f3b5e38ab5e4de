"""L-inf attacks in [0, 1] pixel space, one class per attack (as in torchattacks).

Every attack here works on what can really be saved: each step the model sees the
8-bit image (rounded, with the gradient passed straight through the rounding), so
"the attack succeeded" means "the PNG you save fools the model". Optional `defenses`
are applied in the forward pass the same way (BPDA, Athalye et al. 2018), so an
attacker who knows about e.g. JPEG compression can optimise through it.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def quantize(x):
    """Nearest 8-bit level: what saving as PNG (with rounding, not truncation) keeps."""
    return (x * 255).round_().div_(255)  # in place on the one new tensor: fewer allocations


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


@dataclass
class AttackResult:
    adversarial: torch.Tensor  # (N, 3, H, W), on the 8-bit grid, within epsilon of x
    success: torch.Tensor  # (N,) bool: every view of the image is classified as wanted
    steps: torch.Tensor  # (N,) gradient steps taken until success (or the budget)
    probabilities: torch.Tensor  # (N, classes) for the adversarial image as saved
    best_probability: torch.Tensor  # (N,) highest probability of `labels` reached on the way
    # success, probabilities and best_probability are None when the attack ran with verify=False


class Attack:
    """Base class: the loop, the projection and the success test; subclasses give the step.

    targeted: `labels` are the classes to reach; otherwise the classes to move away from.
    defenses: extra views of the image (e.g. JPEG at quality 75) that must be fooled too.
    on_step(step, cross_entropy, predictions): called after each forward, per-image values
    (cross-entropy to `labels`: falls when targeted, rises when untargeted).
    early_stop: stop once every image is fooled (the steps taken are in the result); off,
    every image takes every step and the result is the last iterate (as in PGD training).
    verify: classify the last iterate (one more forward pass) to report success; training,
    which classifies the result itself, turns it off (only with early_stop off).
    """

    def __init__(
        self,
        model,
        epsilon,
        steps,
        targeted=True,
        defenses=(),
        on_step=None,
        early_stop=True,
        verify=True,
    ):
        if early_stop and not verify:
            raise ValueError("early stopping needs verify=True: it stops on the verdict")
        self.model = model
        self.epsilon = epsilon
        self.steps = steps
        self.targeted = targeted
        self.defenses = tuple(defenses)
        self.on_step = on_step
        self.early_stop = early_stop  # off: always spend the whole budget (benchmarks, training)
        self.verify = verify

    def init_delta(self, x):
        return torch.zeros_like(x)

    def update(self, delta, grad):
        raise NotImplementedError

    def project(self, x, delta):
        """Back into the epsilon ball, and keep x + delta a valid image."""
        return (x + delta.clamp(-self.epsilon, self.epsilon)).clamp_(0, 1).sub_(x)

    def views(self, x_saved):
        return [x_saved, *(straight_through(x_saved, defense) for defense in self.defenses)]

    def __call__(self, x, labels):
        device = self.model.mean.device
        x, labels = x.to(device), labels.to(device)
        n = len(x)
        delta = self.project(x, self.init_delta(x)).requires_grad_(True)
        self.start(delta)
        adversarial = torch.empty_like(x)
        success = torch.zeros(n, dtype=torch.bool, device=device)
        steps = torch.full((n,), self.steps, device=device)
        probabilities = None
        best_probability = torch.zeros(n, device=device)

        for step in range(self.steps + 1):
            if step == self.steps and not self.verify:
                return AttackResult(quantize(x + delta.detach()), None, steps, None, None)
            # The forward after the last step only checks the result: it needs no graph.
            with torch.set_grad_enabled(step < self.steps):
                x_saved = straight_through(x + delta, quantize)
                views = self.views(x_saved)
                batch = views[0] if len(views) == 1 else torch.cat(views)
                logits = self.model(batch).view(len(views), n, -1)
                losses = [F.cross_entropy(z, labels, reduction="none") for z in logits]
                cross_entropy = torch.stack(losses).mean(0)  # (n,), averaged over the views
                loss = cross_entropy if self.targeted else -cross_entropy  # to minimise

            with torch.no_grad():
                p = logits.softmax(-1)  # (views, n, classes)
                predicted = p.argmax(-1)
                fooled = (predicted == labels if self.targeted else predicted != labels).all(0)
                p_label = p.gather(-1, labels.expand(len(views), n)[..., None])[..., 0].amin(0)
                best_probability = torch.maximum(best_probability, p_label)
                if probabilities is None:
                    probabilities = torch.zeros_like(p[0])
                last = step == self.steps or bool(self.early_stop and (success | fooled).all())
                # Keep each image as it was when first fooled (early stop) or at the last step.
                if not self.early_stop:
                    record = torch.ones_like(fooled) if last else torch.zeros_like(fooled)
                    success = fooled
                else:
                    record = (fooled | last) & ~success
                    success = success | fooled
                if record.any():
                    adversarial[record] = x_saved[record]
                    probabilities[record] = p[0, record]
                    steps[record] = step
                if self.on_step:
                    self.on_step(step, cross_entropy.detach(), predicted[0])
            if last:
                break
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                delta = self.project(x, self.update(delta, grad))
            delta.requires_grad_(True)

        return AttackResult(adversarial, success, steps, probabilities, best_probability)

    def start(self, delta):
        """Set up per-run state (e.g. an optimiser) before the first step."""


class TutorialSGD(Attack):
    """The tutorial's optimiser, SGD with momentum on r, with its bugs fixed: r is in pixels,
    projected after (not before) each step, and x + r stays a valid image."""

    def __init__(self, model, epsilon, steps=30, lr=0.1, momentum=0.1, **kwargs):
        super().__init__(model, epsilon, steps, **kwargs)
        self.lr = lr
        self.momentum = momentum

    def start(self, delta):
        self.velocity = torch.zeros_like(delta)

    def update(self, delta, grad):
        # torch.optim.SGD's rule (dampening 0), written out so the projection can follow it.
        self.velocity = self.momentum * self.velocity + grad
        return delta - self.lr * self.velocity


class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018): signed steps, optional random start."""

    def __init__(
        self, model, epsilon, steps=30, step_size=None, random_start=True, seed=None, **kwargs
    ):
        super().__init__(model, epsilon, steps, **kwargs)
        self.step_size = epsilon / 4 if step_size is None else step_size
        self.random_start = random_start
        self.seed = seed

    def init_delta(self, x):
        if not self.random_start:
            return torch.zeros_like(x)
        if self.seed is None:  # torch's global generator: a new start for every image
            return torch.empty_like(x).uniform_(-self.epsilon, self.epsilon)
        # Seeded: the same start for an image whatever batch it is in, so batched runs
        # match one-at-a-time runs.
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.empty(x.shape[1:]).uniform_(-self.epsilon, self.epsilon, generator=generator)
        return noise.to(x.device).expand_as(x).clone()

    def update(self, delta, grad):
        return delta - grad.sign_().mul_(self.step_size)  # grad is ours to overwrite


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2014): one signed step of size epsilon."""

    def __init__(self, model, epsilon, **kwargs):
        super().__init__(model, epsilon, steps=1, step_size=epsilon, random_start=False, **kwargs)
