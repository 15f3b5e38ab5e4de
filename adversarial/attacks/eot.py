"""Expectation over Transformation (EOT): an example that survives a whole distribution of
transformations, not just the one image on disk."""

import torch

from adversarial.attacks.gradient import PGD
from adversarial.attacks.shared import mean_cross_entropy, straight_through, uniform_start


class EOT(PGD):
    """Expectation over Transformation (Athalye, Engstrom, Ilyas and Kwok 2018): PGD on the
    expected loss E_t[loss(t(x'))] over a distribution T of transformations t, estimated at
    each step by the mean over `samples` transformations drawn fresh from T; x' stays
    within epsilon of x on the 8-bit grid (the PNG), and t is applied to the PNG.

    distribution: anything with sample(generator) -> a transformation, a function from
    images to images (adversarial.transforms.Camera is one). Its gradient must reach the
    image: differentiable, or straight through (BPDA) where it is not.
    seed: the random start (as PGD's) and the transformations drawn.
    Every step is taken (no early stop: a few sampled views fooled is not the goal); the
    result is the last iterate, and `success` says whether the PNG itself is fooled.
    on_step(step, loss, predicted): predicted holds the classes of the sampled views.
    """

    def __init__(self, model, epsilon, distribution, steps=30, samples=8, **options):
        super().__init__(model, epsilon, steps, early_stop=False, **options)
        self.distribution = distribution
        self.samples = samples

    def __call__(self, x, labels):
        x, labels, ball, score = self.start(x, labels)
        generator = torch.Generator()
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        if self.random_start:
            delta = ball.project(uniform_start(x, self.epsilon, self.seed))
        else:
            delta = torch.zeros_like(x)
        for step in range(self.steps):
            delta.requires_grad_(True)
            x_saved = straight_through(x + delta, ball.saved)  # the image as its PNG holds it
            transformations = [self.distribution.sample(generator) for _ in range(self.samples)]
            logits = self.logits_under(x_saved, transformations)
            # E_t[cross-entropy], estimated by the mean over the sampled t (and models).
            cross_entropy = mean_cross_entropy(logits, labels)  # (N,)
            score.record(step, x_saved, logits, cross_entropy)
            loss = cross_entropy if self.targeted else -cross_entropy
            (grad,) = torch.autograd.grad(loss.sum(), delta)  # the gradient of the expectation
            with torch.no_grad():
                delta = ball.project(delta - self.step_size * grad.sign())
        with torch.no_grad():
            x_final = ball.saved(x + delta)
            return score.verdict(x_final, self.logits(x_final))

    def logits_under(self, x_saved, transformations):
        """Every model's logits for every transformed view: (models x samples, N, classes),
        all views in one batch."""
        views = torch.cat([t(x_saved) for t in transformations])
        shape = (len(transformations), len(x_saved), -1)
        return torch.cat([model(views).view(shape) for model in self.models])
