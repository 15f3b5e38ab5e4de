"""Attacks that see only the label: the model is a function from images to its top class,
as behind a content filter that answers yes or no. No probabilities, no gradients, no
weights: every answer costs one query.

    decide = model_decision(model)    # decide(x) -> (N,) classes; the only door to the model
    result = HopSkipJump(decide, queries=1000)(x, labels)
"""

import itertools
import math
from dataclasses import dataclass, field

import torch

from adversarial.attacks.shared import image_generator, quantize
from adversarial.plumbing.progress import progress
from adversarial.plumbing.tables import plural

# What each query was for, in the order the algorithm asks them.
KINDS = ("start", "binary search", "gradient samples", "step size")


def model_decision(model):
    """decide(x) -> (N,) the top class of each image: all a label-only attacker is given."""

    @torch.inference_mode()
    def decide(x):
        return model(x).argmax(1)

    return decide


class BudgetSpent(Exception):
    """The image's queries are used up: the attack ends where it stands."""


class Oracle:
    """One image's questions to the model, "is this image adversarial?", on the 8-bit grid.

    Counts every query by kind, refuses any beyond the budget, and keeps the closest
    adversarial image it was ever asked about (what the attack returns: an image the model
    answered for, as its PNG holds it) and the trace of that distance: (query, distance)
    each time it shrinks. on_asked(n), if given, is called with the number n of queries each
    ask adds (for a progress bar).
    """

    def __init__(self, decide, x, label, targeted, budget, norm, on_asked=None):
        self.decide, self.x, self.label, self.targeted = decide, x, label, targeted
        self.budget, self.norm, self.on_asked = budget, norm, on_asked
        self.used, self.by_kind = 0, dict.fromkeys(KINDS, 0)
        self.best, self.best_distance, self.trace = x, math.inf, []

    def ask(self, images, kind):
        """(n,) bool: is each image adversarial? Images past the budget are not asked: the
        answers before them are kept, then BudgetSpent is raised."""
        left = self.budget - self.used
        if left <= 0:
            raise BudgetSpent
        asked = images[:left]
        classes = self.decide(asked)
        adversarial = classes == self.label if self.targeted else classes != self.label
        # In the order they were asked: each adversarial image closer than all before it.
        found = torch.where(adversarial, distance(asked - self.x, self.norm), math.inf).cpu()
        closest_before = torch.cat([torch.tensor([math.inf]), found.cummin(0).values[:-1]])
        closer = found < closest_before.clamp(max=self.best_distance)
        for i in closer.nonzero()[:, 0].tolist():
            self.trace.append((self.used + i + 1, float(found[i])))
        if closer.any():
            self.best_distance = self.trace[-1][1]
            self.best = asked[self.trace[-1][0] - self.used - 1][None].clone()
        self.used += len(asked)
        self.by_kind[kind] += len(asked)
        if self.on_asked:
            self.on_asked(len(asked))
        if len(asked) < len(images):
            raise BudgetSpent
        return adversarial


def distance(delta, norm):
    """(N,) the size of each change: L2 or L-inf, in pixels of [0, 1]."""
    flat = delta.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(1)


@dataclass
class DecisionResult:
    adversarial: torch.Tensor  # (N, C, H, W) the closest adversarial image queried (x if none)
    success: torch.Tensor  # (N,) bool: an adversarial image was found
    queries: torch.Tensor  # (N,) queries spent on each image
    by_kind: list = field(default_factory=list)  # per image: {kind: queries}
    trace: list = field(default_factory=list)  # per image: [(query, best distance so far)]


def distance_after(trace, budget):
    """The best distance an image's trace had reached within `budget` queries (inf if none)."""
    reached = [found for query, found in trace if query <= budget]
    return reached[-1] if reached else math.inf


class HopSkipJump:
    """HopSkipJumpAttack (Chen, Jordan and Wainwright, IEEE S&P 2020, Algorithm 2), L2 or
    L-inf, given only decide(x) -> top class.

    From an adversarial image (untargeted: random noise the model misclassifies; targeted:
    a photo of the target class), a binary search toward x to the decision boundary. Then,
    again and again: estimate the boundary's normal from the labels of random probes around
    the boundary point (the sign of each answer times its probe, the mean answer subtracted
    as a baseline), step along it (L-inf: along its sign) by dist / sqrt(t), halving the
    step until the image is adversarial again (geometric search), and binary search back
    toward x. The sample count grows as 100 sqrt(t); the probes go to `decide` `batch` at a
    time (one forward pass each).

    On the 8-bit grid: every image asked about is one a PNG can hold. Binary searches stop
    when no grid image is left between their ends; the probes are rounded to the grid at
    random (each channel up or down a level, on average the paper's probe), and no smaller
    than sqrt(d) times the gap the grid leaves at the boundary. Queries are counted per image:
    the start, each binary-search step, each probe, each step-size try, up to `queries`.
    The result is the closest adversarial image ever asked about.
    """

    def __init__(
        self,
        decide,
        queries=1000,
        norm="l2",
        targeted=False,
        seed=0,
        first_samples=100,
        max_samples=10_000,
        batch=100,
        start_tries=100,
    ):
        if norm not in ("l2", "linf"):
            raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
        self.decide, self.queries, self.norm = decide, queries, norm
        self.targeted, self.seed = targeted, seed
        self.first_samples, self.max_samples, self.batch = first_samples, max_samples, batch
        self.start_tries = start_tries

    @torch.inference_mode()  # answers only: no graph is ever built
    def __call__(self, x, labels, starts=None):
        """labels: the classes to leave (untargeted) or reach (targeted); starts: (N, C, H,
        W) adversarial images to start from (targeted: required)."""
        if self.targeted and starts is None:
            raise ValueError("a targeted attack starts from images of the target class")
        oracles = []
        total, what = len(x) * self.queries, f"HopSkipJump, {plural(len(x), 'image')}"
        with progress(total=total, what=what, unit="query") as bar:
            for i in range(len(x)):
                start = None if starts is None else starts[i : i + 1]
                oracles.append(self.attack(x[i : i + 1], labels[i], start, bar.update))
                bar.update(self.queries - oracles[-1].used)  # an image given up early
        return DecisionResult(
            adversarial=torch.cat([x[:0], *(oracle.best for oracle in oracles)]),
            success=torch.tensor([bool(oracle.trace) for oracle in oracles], dtype=torch.bool),
            queries=torch.tensor([oracle.used for oracle in oracles], dtype=torch.long),
            by_kind=[oracle.by_kind for oracle in oracles],
            trace=[oracle.trace for oracle in oracles],
        )

    def attack(self, x, label, start, on_asked=None):
        """One image, Algorithm 2 until the budget is spent; returns its Oracle."""
        oracle = Oracle(self.decide, x, label, self.targeted, self.queries, self.norm, on_asked)
        generator = image_generator(self.seed, x[0])
        d = x[0].numel()
        theta = d**-1.5 if self.norm == "l2" else d**-2.0  # the binary search's tolerance
        try:
            x_adversarial = self.start(oracle, x, start, generator)
            if x_adversarial is None:
                return oracle
            x_boundary, gap = self.binary_search(oracle, x, x_adversarial, theta)
            for t in itertools.count(1):
                dist = float(distance(x_boundary - x, self.norm)[0])
                # The probes' size: the paper's (0.1 at first, then sqrt(d) theta dist for
                # L2, d theta dist for L-inf), but at least sqrt(d) times the L2 gap the
                # grid leaves between the binary search's ends (its error, as theta dist is
                # on floats): smaller probes would all get the same answer.
                paper = 0.1 if t == 1 else dist * (d**0.5 if self.norm == "l2" else d) * theta
                delta = max(paper, d**0.5 * gap)
                samples = min(int(self.first_samples * math.sqrt(t)), self.max_samples)
                v = self.estimate_direction(oracle, x_boundary, delta, samples, generator)
                update = v.sign() if self.norm == "linf" else v
                x_t = self.geometric_step(oracle, x_boundary, update, dist / math.sqrt(t))
                if x_t is not None:  # a step the grid can hold: back to the boundary
                    x_boundary, gap = self.binary_search(oracle, x, x_t, theta)
        except BudgetSpent:
            pass
        return oracle

    def start(self, oracle, x, start, generator):
        """An adversarial image to start from: the one given, if the model agrees, else the
        first of `start_tries` uniform noise images the model misclassifies (or None)."""
        if start is not None:
            return start if oracle.ask(start, "start")[0] else None
        for _ in range(self.start_tries):
            noise = torch.randint(0, 256, x.shape, generator=generator).to(x) / 255
            if oracle.ask(noise, "start")[0]:
                return noise
        return None

    def between(self, x, x_adversarial, alpha):
        """The grid image a share alpha of the way from x: L2 along the line, L-inf in the
        box of radius alpha times the L-inf distance (the paper's projections)."""
        delta = x_adversarial - x
        if self.norm == "linf":
            radius = alpha * delta.abs().max()
            return quantize(x + delta.clamp(-radius, radius))
        return quantize(x + alpha * delta)

    def binary_search(self, oracle, x, x_adversarial, theta):
        """Between x (not adversarial) and x_adversarial: the adversarial end, once no grid
        image is left to ask between the two ends (a midpoint that rounds to an end is that
        end, and costs no query), and the L2 gap between the ends."""
        low, high = 0.0, 1.0
        x_low, x_high = x, x_adversarial
        while high - low > theta:
            middle = (low + high) / 2
            x_middle = self.between(x, x_adversarial, middle)
            if torch.equal(x_middle, x_high):
                high = middle
            elif torch.equal(x_middle, x_low):
                low = middle
            elif oracle.ask(x_middle, "binary search")[0]:
                high, x_high = middle, x_middle
            else:
                low, x_low = middle, x_middle
        return x_high, float(distance(x_high - x_low, "l2")[0])

    def estimate_direction(self, oracle, x_boundary, delta, samples, generator):
        """The paper's Monte Carlo estimate of the boundary's normal at x_boundary: the mean
        of phi_b u_b over random probes u_b of size delta, phi_b = +1 where adversarial,
        -1 where not, less the mean phi (the baseline) unless every answer agrees."""
        sum_u, sum_phi_u, sum_phi = torch.zeros_like(x_boundary[0]), 0, 0
        for first in range(0, samples, self.batch):
            probes = self.probes(x_boundary, delta, min(self.batch, samples - first), generator)
            u = probes - x_boundary  # what was asked: rounded and clipped
            phi = oracle.ask(probes, "gradient samples").to(u.dtype) * 2 - 1
            sum_u += u.sum(0)
            sum_phi_u = sum_phi_u + torch.tensordot(phi, u, dims=1)
            sum_phi += float(phi.sum())
        mean_phi = sum_phi / samples
        v = sum_phi_u if abs(mean_phi) == 1 else sum_phi_u - mean_phi * sum_u
        return v[None] / v.norm().clamp_min(1e-12)

    def probes(self, x_boundary, delta, n, generator):
        """n probes x_boundary + delta u on the grid: u uniform on the sphere (L2) or in the
        cube, scaled to unit L2 (L-inf), as the authors do; each channel rounded at random
        to the level below or above, with the chances that keep its mean delta u."""
        shape = (n, *x_boundary.shape[1:])
        if self.norm == "l2":
            u = torch.randn(shape, generator=generator)
        else:
            u = torch.rand(shape, generator=generator) * 2 - 1
        u /= u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        levels = u * delta * 255
        dither = torch.rand(shape, generator=generator)
        rounded = levels.floor() + (dither < levels - levels.floor()).to(levels.dtype)
        return quantize((x_boundary + rounded.to(x_boundary) / 255).clamp_(0, 1))

    def geometric_step(self, oracle, x_boundary, update, step):
        """x_boundary + step * update on the grid, the step halved until the model answers
        adversarial; None once the step is too small to change the image."""
        while True:
            x_t = quantize((x_boundary + step * update).clamp(0, 1))
            if torch.equal(x_t, x_boundary):
                return None
            if oracle.ask(x_t, "step size")[0]:
                return x_t
            step /= 2
