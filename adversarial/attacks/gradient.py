"""White-box attacks that follow the gradient: the tutorial's SGD, FGSM and PGD (L-inf),
and PGDL2 (L2).

Each attack's __call__ is the whole algorithm, top to bottom, with the papers' names;
what they share (the ball, the 8-bit rounding, the score) lives in shared.py.

The model is any nn.Module that takes pixels in [0, 1] and returns logits, or a list of
them: an ensemble, whose loss is the mean of its members' losses and which is fooled only
when every member is (Liu et al. 2017: examples made on an ensemble transfer better).
"""

import torch

from adversarial.attacks.shared import (
    L2Ball,
    LinfBall,
    Scoreboard,
    input_gradient,
    mean_cross_entropy,
    straight_through,
    uniform_start,
)
from adversarial.models import device_of


class Attack:
    """What every gradient attack is given.

    targeted: `labels` are the classes to reach; otherwise the classes to move away from.
    defenses: extra views of the image (e.g. JPEG at quality 75) that must be fooled too;
    the gradient passes straight through them (BPDA).
    early_stop: stop each image at its first success, and the attack once all are fooled;
    off, every image takes every step and the result is the last iterate (as in training).
    on_step(step, loss, predicted): called after every forward pass (see Scoreboard).
    """

    def __init__(
        self, model, epsilon, steps, targeted=True, defenses=(), early_stop=True, on_step=None
    ):
        self.models = list(model) if isinstance(model, (list, tuple)) else [model]
        self.epsilon = epsilon
        self.steps = steps
        self.targeted = targeted
        self.defenses = tuple(defenses)
        self.early_stop = early_stop
        self.on_step = on_step

    def logits(self, x_saved):
        """Every model's logits for every view of the image (as saved, then each defense
        applied to it): (models x views, N, classes). Every one of them must be fooled."""
        views = [x_saved, *(straight_through(x_saved, defense) for defense in self.defenses)]
        batch = views[0] if len(views) == 1 else torch.cat(views)
        shape = (len(views), len(x_saved), -1)
        return torch.cat([model(batch).view(shape) for model in self.models])

    def start(self, x, labels):
        """The images and labels on the model's device, the ball, and a fresh scoreboard."""
        device = device_of(self.models[0])
        x, labels = x.to(device), labels.to(device)
        score = Scoreboard(x, labels, self.targeted, self.steps, self.early_stop, self.on_step)
        return x, labels, LinfBall(x, self.epsilon), score


class TutorialSGD(Attack):
    """The tutorial's optimiser, SGD with momentum on r, with its bugs fixed: r is in pixels,
    projected after (not before) each step, and x + r stays a valid image.

    r in pixels makes each step larger than the tutorial's r in normalised space by
    1 / std^2 (about 20x for ResNet18's std, 4x for EfficientNet-Lite's): the gradient
    with respect to pixels is the normalised one divided by std, and so is each unit of r.
    """

    def __init__(self, model, epsilon, steps=30, lr=0.1, momentum=0.1, **options):
        super().__init__(model, epsilon, steps, **options)
        self.lr = lr
        self.momentum = momentum

    def __call__(self, x, labels):
        x, labels, ball, score = self.start(x, labels)
        r = torch.zeros_like(x)
        velocity = torch.zeros_like(x)
        for step in range(self.steps):
            r.requires_grad_(True)
            x_saved = straight_through(x + r, ball.saved)  # the image as its PNG holds it
            logits = self.logits(x_saved)
            cross_entropy = mean_cross_entropy(logits, labels)  # (N,): to the labels
            if score.record(step, x_saved, logits, cross_entropy):
                return score.result()  # every image fooled
            # Towards the target: lower its cross-entropy; away from a class: raise it.
            loss = cross_entropy if self.targeted else -cross_entropy
            grad = input_gradient(loss, r)
            with torch.no_grad():  # torch.optim.SGD's rule (dampening 0), then the projection
                velocity = self.momentum * velocity + grad
                r = ball.project(r - self.lr * velocity)
        with torch.no_grad():
            x_final = ball.saved(x + r)
            return score.verdict(x_final, self.logits(x_final))


class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018): from a random point of the ball,
    signed steps of `step_size` (default epsilon / 4), each projected back into the ball.

    seed: the random start of each image is drawn from the seed and the image itself (the
    same in any batch); without one, from torch's global generator.
    """

    def __init__(
        self, model, epsilon, steps=30, step_size=None, random_start=True, seed=None, **options
    ):
        super().__init__(model, epsilon, steps, **options)
        self.step_size = epsilon / 4 if step_size is None else step_size
        self.random_start = random_start
        self.seed = seed

    def __call__(self, x, labels):
        x, labels, ball, score = self.start(x, labels)
        if self.random_start:
            delta = ball.project(uniform_start(x, self.epsilon, self.seed))
        else:
            delta = torch.zeros_like(x)
        for step in range(self.steps):
            delta.requires_grad_(True)
            x_saved = straight_through(x + delta, ball.saved)  # the image as its PNG holds it
            logits = self.logits(x_saved)
            cross_entropy = mean_cross_entropy(logits, labels)  # (N,): to the labels
            if score.record(step, x_saved, logits, cross_entropy):
                return score.result()  # every image fooled
            # Towards the target: lower its cross-entropy; away from a class: raise it.
            loss = cross_entropy if self.targeted else -cross_entropy
            grad = input_gradient(loss, delta)
            with torch.no_grad():
                delta = ball.project(delta - self.step_size * grad.sign())
        with torch.no_grad():
            x_final = ball.saved(x + delta)
            return score.verdict(x_final, self.logits(x_final))


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2014): one signed step of epsilon,
    from the image itself: x + epsilon * sign(gradient)."""

    def __init__(self, model, epsilon, **options):
        super().__init__(model, epsilon, steps=1, step_size=epsilon, random_start=False, **options)


class PGDL2(Attack):
    """PGD in the L2 ball (Madry et al. 2018; Salman et al. 2019 against smoothed models):
    steps of `step_size` (default epsilon / 4) along the gradient divided by its L2 norm,
    each projected back into the ball of radius epsilon and onto [0, 1]. Starts at the image.

    Against a smoothed classifier, give it SmoothedSoftmax(model, sigma, m): each forward
    pass draws m fresh noise samples, so the loss is the cross-entropy of their mean
    softmax (an estimate of the expectation over the noise, Salman et al.'s SmoothAdv).
    """

    def __init__(self, model, epsilon, steps=20, step_size=None, **options):
        super().__init__(model, epsilon, steps, **options)
        self.step_size = epsilon / 4 if step_size is None else step_size

    def start(self, x, labels):
        x, labels, _, score = super().start(x, labels)
        return x, labels, L2Ball(x, self.epsilon), score

    def __call__(self, x, labels):
        x, labels, ball, score = self.start(x, labels)
        delta = torch.zeros_like(x)
        for step in range(self.steps):
            delta.requires_grad_(True)
            x_saved = straight_through(x + delta, ball.saved)  # the image as its PNG holds it
            logits = self.logits(x_saved)
            cross_entropy = mean_cross_entropy(logits, labels)  # (N,): to the labels
            if score.record(step, x_saved, logits, cross_entropy):
                return score.result()  # every image fooled
            # Towards the target: lower its cross-entropy; away from a class: raise it.
            loss = cross_entropy if self.targeted else -cross_entropy
            grad = input_gradient(loss, delta)
            with torch.no_grad():
                norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
                direction = grad / norms.view(-1, *[1] * (grad.dim() - 1))
                delta = ball.project(delta - self.step_size * direction)
        with torch.no_grad():
            x_final = ball.saved(x + delta)
            return score.verdict(x_final, self.logits(x_final))
