"""L-inf attacks in [0, 1] pixel space, one class per attack (as in torchattacks).

Every attack here works on what can really be saved: each step the model sees the
8-bit image (rounded, with the gradient passed straight through the rounding), so
"the attack succeeded" means "the PNG you save fools the model". Optional `defenses`
are applied in the forward pass the same way (BPDA, Athalye et al. 2018), so an
attacker who knows about e.g. JPEG compression can optimise through it.

The model is any nn.Module that takes pixels in [0, 1] and returns logits, or a list of
them: an ensemble, whose loss is the mean of its members' losses and which is fooled only
when every member is (Liu et al. 2017: examples made on an ensemble transfer better).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from utils.models import device_of


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
    probabilities: torch.Tensor  # (N, classes) for the adversarial image as saved (first model)
    best_probability: torch.Tensor  # (N,) best probability of success reached on the way
    # success, probabilities and best_probability are None when the attack ran with verify=False


class Attack:
    """Base class: the loop, the projection and the success test; subclasses give the step.

    targeted: `labels` are the classes to reach; otherwise the classes to move away from.
    model: an nn.Module on [0, 1] pixels that returns logits, or a list of them (an ensemble).
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
        self.models = list(model) if isinstance(model, (list, tuple)) else [model]
        self.epsilon = epsilon
        self.steps = steps
        self.targeted = targeted
        self.defenses = tuple(defenses)
        self.on_step = on_step
        self.early_stop = early_stop
        self.verify = verify

    def __call__(self, x, labels):
        """Attack the images x (N, 3, H, W); returns an AttackResult."""
        device = device_of(self.models[0])
        x, labels = x.to(device), labels.to(device)
        delta = self.project(x, self.init_delta(x))
        self.start(delta)
        scoreboard = _Scoreboard(self, x, labels)
        for step in range(self.steps):
            delta.requires_grad_(True)
            x_saved = straight_through(x + delta, quantize)  # the image rounded to 8 bits
            logits = self.classify(x_saved)  # (models x views, N, classes)
            cross_entropy = self.cross_entropy(logits, labels)  # (N,): the mean over them
            if scoreboard.record(step, x_saved, logits, cross_entropy):
                return scoreboard.result()  # early stop: every image is fooled
            loss = cross_entropy if self.targeted else -cross_entropy  # to minimise
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                delta = self.project(x, self.update(delta, grad))
        return self.verdict(scoreboard, quantize(x + delta.detach()))

    def init_delta(self, x):
        return torch.zeros_like(x)

    def start(self, delta):
        """Set up per-run state (e.g. an optimiser) before the first step."""

    def update(self, delta, grad):
        raise NotImplementedError

    def project(self, x, delta):
        """Back into the epsilon ball, and keep x + delta a valid image."""
        return (x + delta.clamp(-self.epsilon, self.epsilon)).clamp_(0, 1).sub_(x)

    def classify(self, x_saved):
        """Logits of every view (the image as saved, then each defense applied to it) by
        every model: (models x views, N, classes), each must be fooled."""
        views = [x_saved, *(straight_through(x_saved, defense) for defense in self.defenses)]
        batch = views[0] if len(views) == 1 else torch.cat(views)
        shape = (len(views), len(x_saved), -1)
        return torch.cat([model(batch).view(shape) for model in self.models])

    def cross_entropy(self, logits, labels):
        losses = [F.cross_entropy(view, labels, reduction="none") for view in logits]
        return torch.stack(losses).mean(0)

    @torch.no_grad()
    def verdict(self, scoreboard, x_final):
        """Judge the last iterate (the forward needs no graph), unless verify is off."""
        if not self.verify:
            return AttackResult(x_final, None, scoreboard.steps, None, None)
        logits = self.classify(x_final)
        scoreboard.record(
            self.steps, x_final, logits, self.cross_entropy(logits, scoreboard.labels)
        )
        return scoreboard.result()


class _Scoreboard:
    """The bookkeeping of an attack run: which images are fooled, since which step, what
    each looked like then, and the best probability of success seen so far."""

    def __init__(self, attack, x, labels):
        self.attack, self.labels = attack, labels
        n = len(x)
        self.adversarial = torch.empty_like(x)
        self.success = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.steps = torch.full((n,), attack.steps, device=x.device)
        self.probabilities = None
        self.best_probability = torch.zeros(n, device=x.device)

    @torch.no_grad()
    def record(self, step, x_saved, logits, cross_entropy):
        """Score one forward pass; True when the attack is over (the last step, or, with
        early stopping, every image fooled)."""
        attack, labels = self.attack, self.labels
        p = logits.softmax(-1)  # (models x views, N, classes); the first model's first view
        predicted = p.argmax(-1)
        fooled = (predicted == labels if attack.targeted else predicted != labels).all(0)
        self.best_probability = torch.maximum(self.best_probability, self._success_p(p))
        if attack.on_step:
            attack.on_step(step, cross_entropy.detach(), predicted[0])
        last = step == attack.steps
        if attack.early_stop:  # keep each image as it was when first fooled
            keep = (fooled | last) & ~self.success
            self.success |= fooled
            last = last or bool(self.success.all())
        else:  # keep the last iterate of every image
            keep = torch.full_like(fooled, last)
            if last:
                self.success = fooled
        if keep.any():
            if self.probabilities is None:
                self.probabilities = torch.zeros_like(p[0])
            self.adversarial[keep] = x_saved[keep]
            self.probabilities[keep] = p[0, keep]
            self.steps[keep] = step
        return last

    def _success_p(self, p):
        """Per image, over the views: the probability of the target (targeted), or of
        anything but the original class (untargeted); the weakest view counts."""
        p_label = p.gather(-1, self.labels.expand(p.shape[:2])[..., None])[..., 0]
        return (p_label if self.attack.targeted else 1 - p_label).amin(0)

    def result(self):
        return AttackResult(
            self.adversarial, self.success, self.steps, self.probabilities, self.best_probability
        )


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
        # Seeded: the same start for an image whatever batch it is in.
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.empty(x.shape[1:]).uniform_(-self.epsilon, self.epsilon, generator=generator)
        return noise.to(x.device).expand_as(x).clone()

    def update(self, delta, grad):
        return delta - grad.sign_().mul_(self.step_size)  # grad is ours to overwrite


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2014): one signed step of size epsilon."""

    def __init__(self, model, epsilon, **kwargs):
        super().__init__(model, epsilon, steps=1, step_size=epsilon, random_start=False, **kwargs)
