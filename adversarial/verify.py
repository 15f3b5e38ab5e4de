"""Step 17's lesson: three answers to "is there any image within epsilon that changes this
digit's class?" for a small fully connected ReLU network on 8x8 digits.

- an attack (PGD) finds an image that does, or not: a lower bound on the worst case;
- the exact answer, a mixed-integer linear program (Tjeng, Xiao and Tedrake 2019) solved by
  SciPy's `milp` (HiGHS): robust, or an image that does (a counterexample);
- relaxations that bound every logit over the whole ball: interval bound propagation (IBP,
  Gowal et al. 2018) and CROWN's linear bounds (Zhang et al. 2018): certified, or unknown.

And certified training: Gowal et al.'s IBP loss, which trains the network for the proof.

The threat model is the course's: the 8-bit images (PNG files) within epsilon of the digit.
The relaxations bound the box that holds them, [lowest, highest] pixel by pixel
(LinfBall's); the MILP's input is 64 whole 8-bit levels in that box, so its answer, and its
counterexample, are about files that can be saved.

    from adversarial.verify import build_network, interval_bounds, crown_bounds, exact
"""

import copy
import itertools
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adversarial.attacks.shared import LinfBall


def build_network(hidden=(32, 32)):
    """64 pixels in [0, 1] -> ReLU layers of `hidden` units -> 10 logits: small enough to
    verify exactly (no normalisation: the pixels are already in [0, 1])."""
    sizes = [64, *hidden]
    layers = [nn.Flatten()]
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 10))


def affine_layers(network, labels):
    """The network as a list of (W, b), its last layer folded into the margins
    logit[label] - logit[j], j != label: a (N, 9, h) weight per digit (Gowal et al.'s
    "elision"). A digit is robust when all 9 margins stay above 0 in the whole ball."""
    linears = [m for m in network if isinstance(m, nn.Linear)]
    layers = [(m.weight, m.bias) for m in linears]
    others = torch.stack([torch.arange(10)[torch.arange(10) != y] for y in labels.tolist()])
    W, b = layers[-1]
    W_margin = W[labels][:, None, :] - W[others]  # (N, 9, h)
    b_margin = b[labels][:, None] - b[others]  # (N, 9)
    return [*layers[:-1], (W_margin, b_margin)], others


def apply(W, x):
    """W x for every digit: W is (out, in) for all, or (N, out, in) one per digit."""
    return (W @ x.unsqueeze(-1)).squeeze(-1)


def interval_bounds(layers, lower, upper):
    """IBP: [lower, upper] of each layer's output (before its ReLU), layer by layer.

    A box through W x + b is the box around the centre's image, with radius |W| times the
    radius; ReLU is monotone, so it maps a box's corners to its corners."""
    bounds = []
    for i, (W, b) in enumerate(layers):
        if i > 0:
            lower, upper = lower.clamp(min=0), upper.clamp(min=0)  # the previous ReLU
        centre, radius = (upper + lower) / 2, (upper - lower) / 2
        centre, radius = apply(W, centre) + b, apply(W.abs(), radius)
        lower, upper = centre - radius, centre + radius
        bounds.append((lower, upper))
    return bounds


def linear_lower_bound(layers, bounds, lower, upper):
    """CROWN: a lower bound on the last layer's output, given bounds on the earlier layers'
    pre-activations, by carrying a linear function of the layer's input back to the pixels.

    Each ReLU(z) with l < 0 < u is replaced by a line under it (0 or z, whichever is closer
    on [l, u]) and the line above it, u (z - l) / (u - l): the one under where the
    coefficient is positive, the one above where it is negative. At the pixels, the box's
    minimum of A x is A times its centre minus |A| times its radius."""
    W, b = layers[-1]
    A = W.expand(len(lower), *W.shape[-2:])  # (N, out, in): the bound is A x + constant
    constant = b.expand(len(lower), b.shape[-1])
    for (W, b), (lo, hi) in zip(reversed(layers[:-1]), reversed(bounds), strict=True):
        unstable = (lo < 0) & (hi > 0)
        up_slope = torch.where(unstable, hi / (hi - lo).clamp(min=1e-12), (lo >= 0).to(lo.dtype))
        up_shift = torch.where(unstable, -up_slope * lo, torch.zeros_like(lo))
        low_slope = torch.where(unstable, (hi > -lo).to(lo.dtype), (lo >= 0).to(lo.dtype))
        positive, negative = A.clamp(min=0), A.clamp(max=0)
        constant = constant + apply(negative, up_shift)
        A = positive * low_slope[:, None, :] + negative * up_slope[:, None, :]
        constant = constant + apply(A, b.expand(len(lo), b.shape[-1]))
        A = A @ W
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    return apply(A, centre) - apply(A.abs(), radius) + constant


def crown_bounds(layers, lower, upper):
    """CROWN's bounds of every layer, layer by layer, each from the earlier ones: the first
    layer's are exact (IBP's); a hidden layer's upper bound is minus the lower bound of -z."""
    bounds = interval_bounds(layers[:1], lower, upper)
    for k in range(1, len(layers)):
        W, b = layers[k]
        below = linear_lower_bound(layers[: k + 1], bounds, lower, upper)
        if k == len(layers) - 1:  # the margins: only their lower bound matters
            return [*bounds, (below, torch.full_like(below, torch.inf))]
        above = -linear_lower_bound([*layers[:k], (-W, -b)], bounds, lower, upper)
        bounds.append((below, above))
    return bounds


def ball_box(x, epsilon):
    """The box around each digit that holds every 8-bit image within epsilon of it, flat."""
    ball = LinfBall(x, epsilon)
    return ball.lowest.flatten(1), ball.highest.flatten(1)


def certified(bound_method, network, x, labels, epsilon):
    """(N,) bool: every margin's lower bound above 0 over the ball (bound_method is
    interval_bounds or crown_bounds)."""
    with torch.no_grad():
        layers, _ = affine_layers(network, labels)
        lower, upper = ball_box(x, epsilon)
        margins_lower, _ = bound_method(layers, lower, upper)[-1]
        return (margins_lower > 0).all(1)


def unstable_relus(network, x, epsilon, bound_method=None):
    """(N,) the number of ReLUs whose input may be either side of 0 over the ball: the
    MILP's binary variables that are not fixed (by default with the MILP's bounds)."""
    with torch.no_grad():
        layers, _ = affine_layers(network, torch.zeros(len(x), dtype=torch.long))
        bounds = (bound_method or tightest_bounds)(layers, *ball_box(x, epsilon))[:-1]
        return sum(((lower < 0) & (upper > 0)).sum(1) for lower, upper in bounds)


class Answer(NamedTuple):
    verdict: str  # "robust", "not robust" or "timeout"
    counterexample: torch.Tensor | None  # (1, 8, 8) on the 8-bit grid, when not robust
    seconds: float


def tightest_bounds(layers, lower, upper):
    """Each neuron's interval, the tighter end of IBP's and of CROWN's (both hold)."""
    pairs = zip(
        interval_bounds(layers, lower, upper), crown_bounds(layers, lower, upper), strict=True
    )
    return [(torch.maximum(l1, l2), torch.minimum(u1, u2)) for (l1, u1), (l2, u2) in pairs]


class Program(NamedTuple):
    """Tjeng et al.'s mixed-integer program for one digit (see `encode`)."""

    margins: list  # per class j != label: (objective c, constant): margin_j = c v + constant
    margins_lower: np.ndarray  # (9,) the bounds' lower bound of each margin
    constraints: object  # scipy.optimize.LinearConstraint: the network, layer by layer
    bounds: object  # scipy.optimize.Bounds of every variable
    integrality: np.ndarray  # 1: integer (the input levels and the ReLUs' d), 0: real
    others: list  # the class j of each margin


def encode(network, x, label, epsilon, bound_method=None):
    """The program whose feasible points are exactly the 8-bit images within epsilon of x
    (1, 8, 8), with every neuron's value, and whose margins are linear in them.

    Variables: the 64 input levels k (integers, pixel = k / 255), then, per hidden layer,
    its pre-activations z, its outputs a and one binary d per ReLU (1: active). Tjeng et
    al.'s encoding of a = ReLU(z) with interval bounds lo <= z <= hi ("big M"):
        a >= z,  a >= 0,  a <= hi d,  a <= z - lo (1 - d)
    (d = 1 gives a = z, d = 0 gives a = 0). A ReLU that the bounds show is always active
    (lo >= 0) or inactive (hi <= 0) has its d fixed: no branching on it. The bounds are
    bound_method's: by default each neuron's tighter end of IBP's and CROWN's (as Tjeng
    et al. take the tighter of two methods); interval_bounds alone gives looser big-Ms,
    more unstable ReLUs and a slower MILP (bench/verify.py measures how much)."""
    from scipy.optimize import Bounds, LinearConstraint

    with torch.no_grad():  # in float64, as the solver computes
        layers, others = affine_layers(copy.deepcopy(network).double(), torch.tensor([label]))
        lower, upper = ball_box(x[None].double(), epsilon)
        bounds = (bound_method or tightest_bounds)(layers, lower, upper)
    layers = [(W.detach().numpy(), b.detach().numpy()) for W, b in layers]
    bounds = [(lo[0].numpy(), up[0].numpy()) for lo, up in bounds]

    # Variable blocks: [k (64) | z1 a1 d1 | z2 a2 d2 | ...]
    n = 64 + sum(3 * len(lo) for lo, _ in bounds[:-1])
    low, high, integer = np.zeros(n), np.zeros(n), np.zeros(n)
    low[:64], high[:64], integer[:64] = lower[0].numpy() * 255, upper[0].numpy() * 255, 1
    rows, right_low, right_high = [], [], []

    def constraint(coefficients, at_least, at_most):
        rows.append(coefficients)
        right_low.append(at_least)
        right_high.append(at_most)

    previous, previous_scale, offset = slice(0, 64), 1 / 255, 64  # a_0: the pixels, k / 255
    for (W, b), (lo, hi) in zip(layers[:-1], bounds[:-1], strict=True):
        h = len(lo)
        z, a, d = (slice(offset + i * h, offset + (i + 1) * h) for i in range(3))
        low[z], high[z] = lo, hi
        low[a], high[a] = 0, np.maximum(hi, 0)
        low[d], high[d], integer[d] = lo >= 0, hi > 0, 1
        for i in range(h):
            row = np.zeros(n)  # z = W a_previous + b
            row[z.start + i], row[previous] = 1, -W[i] * previous_scale
            constraint(row, b[i], b[i])
            row = np.zeros(n)  # a - z >= 0
            row[a.start + i], row[z.start + i] = 1, -1
            constraint(row, 0, np.inf)
            row = np.zeros(n)  # a - hi d <= 0
            row[a.start + i], row[d.start + i] = 1, -hi[i]
            constraint(row, -np.inf, 0)
            row = np.zeros(n)  # a - z - lo d <= -lo
            row[a.start + i], row[z.start + i], row[d.start + i] = 1, -1, -lo[i]
            constraint(row, -np.inf, -lo[i])
        previous, previous_scale, offset = a, 1, offset + 3 * h

    W, b = layers[-1]  # the margins, (1, 9, h) and (1, 9)
    margins = []
    for j in range(W.shape[1]):
        objective = np.zeros(n)
        objective[previous] = W[0, j]
        margins.append((objective, b[0, j]))
    network_rows = LinearConstraint(np.array(rows), right_low, right_high)
    return Program(
        margins, bounds[-1][0], network_rows, Bounds(low, high), integer, others[0].tolist()
    )


def exact(network, x, label, epsilon, time_limit, bound_method=None):
    """The MILP's answer for one digit x (1, 8, 8): is there an 8-bit image within epsilon
    whose logit for some class j != label is at least the label's? One MILP per class j
    that the bounds do not already rule out (`encode`'s program, with margin_j <= 0), the
    classes nearest the label first, until one finds such an image."""
    from scipy.optimize import LinearConstraint, milp

    start = time.perf_counter()
    program = encode(network, x, label, epsilon, bound_method)
    with torch.no_grad():
        logits = network(x[None])[0, program.others].numpy()
    for j in np.argsort(-logits):
        if program.margins_lower[j] > 0:
            continue  # the bounds already prove this margin positive
        left = time_limit - (time.perf_counter() - start)
        if left <= 0:
            return Answer("timeout", None, time.perf_counter() - start)
        objective, constant = program.margins[j]
        fooling = LinearConstraint(objective, -np.inf, -constant)  # margin <= 0
        result = milp(
            objective,
            integrality=program.integrality,
            bounds=program.bounds,
            constraints=[program.constraints, fooling],
            options={"time_limit": left},
        )
        if result.status not in (0, 1, 2):  # 0: solved, 1: time up, 2: no such image
            raise RuntimeError(f"HiGHS: {result.message}")
        if result.status == 1 and result.x is None:  # time up, no image found
            return Answer("timeout", None, time.perf_counter() - start)
        if result.x is not None:  # an image that fools: its levels are integers
            levels = torch.tensor(np.round(result.x[:64]), dtype=torch.float32)
            image = levels.div(255).view(1, 8, 8)
            if fools(network, image, label):
                return Answer("not robust", image, time.perf_counter() - start)
            return Answer("timeout", None, time.perf_counter() - start)  # a tie at 0
    return Answer("robust", None, time.perf_counter() - start)


def smallest_margin(program, j, relax=False, time_limit=60):
    """The smallest margin_j over the program's points (None if time ran out): exact, or
    with every integer relaxed to a real in its bounds (the LP relaxation: each ReLU then
    lies in its triangle, lo <= z <= hi, a >= 0, a >= z, a <= hi (z - lo) / (hi - lo))."""
    from scipy.optimize import milp

    objective, constant = program.margins[j]
    integrality = np.zeros_like(program.integrality) if relax else program.integrality
    result = milp(
        objective,
        integrality=integrality,
        bounds=program.bounds,
        constraints=[program.constraints],
        options={"time_limit": time_limit},
    )
    return None if result.status != 0 else result.fun + constant


def fools(network, image, label):
    """The forward pass that checks a counterexample: its class is not the label."""
    with torch.no_grad():
        return int(network(image[None]).argmax(1)) != label


def ibp_loss(x, y, epsilon, steps):
    """Gowal et al.'s IBP training, as batch_loss(model, batch) for digits.train over
    `steps` batches: kappa CE(z, y) + (1 - kappa) CE(z_worst, y), where z_worst is the
    worst case over the ball that IBP can bound (the label's logit at its lowest, every
    other at its highest, from the margins' lower bounds). The first quarter of the steps
    is clean (epsilon 0, kappa 1); over the next half epsilon ramps up to its value and
    kappa down to 1/2, which they keep to the end."""
    step = 0

    def loss(model, batch):
        nonlocal step
        ramp = min(max((step - steps / 4) / (steps / 2), 0.0), 1.0)
        step += 1
        clean = F.cross_entropy(model(x[batch]), y[batch])
        if ramp == 0:
            return clean
        layers, _ = affine_layers(model, y[batch])
        pixels = x[batch].flatten(1)
        lower = (pixels - ramp * epsilon).clamp(min=0)
        upper = (pixels + ramp * epsilon).clamp(max=1)
        margins_lower, _ = interval_bounds(layers, lower, upper)[-1]
        worst = torch.cat([torch.zeros_like(margins_lower[:, :1]), -margins_lower], 1)
        robust = F.cross_entropy(worst, torch.zeros_like(y[batch]))  # the label is column 0
        kappa = 1 - ramp / 2
        return kappa * clean + (1 - kappa) * robust

    return loss
