"""Randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019): a classifier with a
guarantee. The smoothed classifier g(x) is the class the base classifier f returns most
often for x + noise, noise ~ N(0, sigma^2 I) in [0, 1] pixel space. If the top class has
probability pA >= pA_lower > 1/2 under the noise, then g(x + delta) is the same class for
every ||delta||_2 < sigma * PhiInverse(pA_lower): a certified L2 radius.

PREDICT and CERTIFY follow the paper (and locuslab/smoothing's code/core.py): Monte Carlo
counts of f's classes over noisy copies, one forward pass per batch of copies, every copy
with its own noise. Either may abstain (ABSTAIN) rather than guess.

    from adversarial.smoothing import certify, predict, radius_ceiling
"""

import torch
from scipy.stats import binomtest, norm
from torch import nn

from adversarial.plumbing.progress import progress

ABSTAIN = -1
# The largest sigma step 12 takes: 4 times the whole pixel range [0, 1] (Cohen et al. go
# up to 1), beyond which the noise leaves nothing of a digit; a sigma like 1e308 would
# train weights that are not finite.
MAX_SIGMA = 4.0


def sample_noise(model, x, sigma, num, batch_size):
    """(classes,) counts of the base classifier's answers on `num` noisy copies of the one
    image x (C, H, W): fresh Gaussian noise for every copy, in pixel space."""
    counts = None
    with torch.inference_mode():
        remaining = num
        while remaining > 0:
            size = min(batch_size, remaining)
            batch = x.unsqueeze(0).expand(size, *x.shape)
            noise = torch.randn_like(batch) * sigma
            logits = model(batch + noise)
            if counts is None:
                counts = torch.zeros(logits.shape[1], dtype=torch.long)
            counts += torch.bincount(logits.argmax(1).cpu(), minlength=len(counts))
            remaining -= size
    return counts


def lower_confidence_bound(k, n, alpha):
    """One-sided (1 - alpha) lower Clopper-Pearson bound on a binomial proportion, k of n:
    statsmodels' proportion_confint(k, n, alpha=2 * alpha, method="beta")[0], as Cohen's."""
    return binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low


def certify(model, x, sigma, n0, n, alpha, batch_size=1000):
    """CERTIFY: (class, radius), or (ABSTAIN, 0.0). With probability at least 1 - alpha
    the class is g(x) and g is constant on the L2 ball of that radius around x.

    Selection: the top class cA of n0 noisy copies. Estimation: a fresh n copies, nA of
    them cA; pA_lower their lower bound. Abstain unless pA_lower > 1/2.
    """
    c_a = int(sample_noise(model, x, sigma, n0, batch_size).argmax())
    n_a = int(sample_noise(model, x, sigma, n, batch_size)[c_a])
    p_a_lower = lower_confidence_bound(n_a, n, alpha)
    if p_a_lower <= 0.5:
        return ABSTAIN, 0.0
    return c_a, sigma * norm.ppf(p_a_lower)


def predict(model, x, sigma, n, alpha, batch_size=1000):
    """PREDICT: g(x), or ABSTAIN. Returns a wrong class with probability at most alpha:
    the top two counts of n noisy copies must differ by a two-sided binomial test."""
    counts = sample_noise(model, x, sigma, n, batch_size)
    top2 = counts.topk(2)
    n_a, n_b = int(top2.values[0]), int(top2.values[1])
    if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
        return ABSTAIN
    return int(top2.indices[0])


def top_class(model, x, sigma, n, batch_size=1000):
    """The Monte Carlo top class of n noisy copies (never abstains): the estimate of g(x)."""
    return int(sample_noise(model, x, sigma, n, batch_size).argmax())


def sigma_name(sigma):
    """How a sigma is written in file names and tables: '0.25', or every digit it needs to
    tell it apart ('0.1000001', never a second '0.1')."""
    short = f"{sigma:g}"
    return short if float(short) == sigma else repr(sigma)


def radius_ceiling(sigma, n, alpha):
    """The largest radius CERTIFY can ever return with n samples: even when all n copies
    agree, pA_lower is only alpha ** (1 / n), so no radius above sigma *
    PhiInverse(alpha ** (1 / n)) is certified, however robust the classifier."""
    return sigma * norm.ppf(alpha ** (1 / n))


def certified_accuracy(classes, radii, labels, radius):
    """The share of images certified correct at `radius`: right class, radius at least it."""
    classes, radii = torch.as_tensor(classes), torch.as_tensor(radii)
    return ((classes == labels) & (radii >= radius)).float().mean().item()


def certified_steps(classes, radii, labels, largest):
    """Certified accuracy for every radius from 0 to `largest`, exactly: the (x, y) of a step
    function that falls just past each image's certified radius, and is 0 past them all."""
    right = torch.as_tensor(classes) == labels
    radii = torch.as_tensor(radii)
    x = sorted({0.0, largest, *(r for r in radii[right].tolist() if r < largest)})
    return x, [(right & (radii > r)).float().mean().item() for r in x]


class SmoothedSoftmax(nn.Module):
    """The smoothed classifier's soft version for attacks (Salman et al. 2019): for each
    image, the log of the mean softmax of the base classifier over m fresh noise samples.
    Its cross-entropy to a label is the cross-entropy of the mean softmax."""

    def __init__(self, model, sigma, m):
        super().__init__()
        self.model, self.sigma, self.m = model, sigma, m

    def forward(self, x):
        copies = x.repeat(self.m, *[1] * (x.dim() - 1))  # (m * N, C, H, W), sample-major
        p = self.model(copies + torch.randn_like(copies) * self.sigma).softmax(1)
        return p.view(self.m, len(x), -1).mean(0).clamp_min(1e-12).log()


# Step 12's measurement and report, on the digits.


def certify_all(model, x, sigma, n0, n, alpha, batch_size=1000):
    """CERTIFY on every image: (classes, radii) tensors; ABSTAIN and 0 where it abstains."""
    images = progress(x, f"certifying, sigma {sigma:g}", unit="image")
    results = [certify(model, image, sigma, n0, n, alpha, batch_size) for image in images]
    classes, radii = zip(*results, strict=True)
    return torch.tensor(classes), torch.tensor(radii, dtype=torch.float32)


def empirical_accuracy(model, x, y, sigma, radii, m, steps, n):
    """[accuracy on the clean images, then under L2 PGD at each radius > 0]: PGDL2 against
    SmoothedSoftmax(model, sigma, m), all steps taken, the last (saved, 8-bit) iterate judged
    by the smoothed classifier's Monte Carlo top class over n noisy copies."""
    from adversarial.attacks import PGDL2

    smoothed = SmoothedSoftmax(model, sigma, m)
    accuracies = []
    for radius in progress(radii, f"attacking, sigma {sigma:g}", unit="radius"):
        if radius == 0:
            x_attacked = x
        else:
            attack = PGDL2(smoothed, radius, steps, targeted=False, early_stop=False)
            x_attacked = attack(x, y).adversarial
        classes = torch.tensor([top_class(model, image, sigma, n) for image in x_attacked])
        accuracies.append((classes == y).float().mean().item())
    return accuracies


def report(certified, empirical, labels, radii, n, alpha, files):
    """Print certified beside empirical accuracy per sigma and radius, the abstentions and
    the ceilings; return the writers of the plot and the CSV ({path: write}), for the run
    to save with its other files. certified: {sigma: (classes, radii)};
    empirical: {sigma: [accuracy per radius]}."""
    from adversarial.plumbing.figures import Curve, curves_writer
    from adversarial.plumbing.tables import csv_writer, print_table

    sigmas = list(certified)
    rows, csv_rows, curves, marks = [], [], [], []
    table = {
        sigma: [certified_accuracy(*certified[sigma], labels, r) for r in radii] for sigma in sigmas
    }
    for i, radius in enumerate(radii):
        row = [f"{radius:g}"]
        for sigma in sigmas:
            row += [f"{table[sigma][i]:.1%}", f"{empirical[sigma][i]:.1%}"]
            csv_rows.append([sigma, radius, table[sigma][i], empirical[sigma][i]])
        rows.append(row)
    header = ["L2 radius"]
    for sigma in sigmas:
        header += [f"sigma {sigma_name(sigma)} certified", "PGD"]
    print("Accuracy of the smoothed classifiers: certified, and under L2 PGD (empirical):")
    print_table(header, rows)
    for color, sigma in zip("brgcmk", sigmas, strict=False):
        classes, _ = certified[sigma]
        abstained = (classes == ABSTAIN).float().mean().item()
        ceiling = radius_ceiling(sigma, n, alpha)
        name = f"sigma {sigma_name(sigma)}"
        if ceiling > 0:
            limit = f"no radius above {ceiling:.3f} can be certified"
            marks.append((f"ceiling, {name}", ceiling, color))
        else:  # even n copies out of n leave pA_lower at 1/2 or below
            limit = f"no radius can be certified with N = {n} and alpha = {alpha:g}"
        print(f"{name}: abstained on {abstained:.1%}; {limit}")
        x, y = certified_steps(*certified[sigma], labels, radii[-1])
        curves.append(Curve(f"{name}, certified", y, f"{color}-", x=x, steps=True))
        curves.append((f"{name}, under L2 PGD", empirical[sigma], f"{color}x--"))
    png, csv = files
    title = f"Randomized smoothing on the digits (N = {n}, alpha = {alpha:g})"
    axis = ("L2 radius", "accuracy")
    figure = curves_writer([(title, curves)], radii, png, *axis, marks, percent=True)
    header = ["sigma", "radius", "certified accuracy", "empirical robust accuracy"]
    return {png: figure, csv: csv_writer(header, csv_rows)}
