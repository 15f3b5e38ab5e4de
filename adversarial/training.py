"""Training with adversarial examples: three objectives, each made of the course's attacks.

Each is the loss of one batch (x, y) for a model that is learning; the attacks are made on
the fly against the model as it is at that step. They differentiate with respect to their
perturbation only (torch.autograd.grad), so the weights' .grad stay untouched until the
training step's own backward pass. Every digit takes the attack's full budget
(early_stop=False), as in the papers: stopping a digit at its first mistake would train on
examples barely across the boundary.
"""

import torch
import torch.nn.functional as F

from adversarial.attacks import FGSM, PGD

MADRY_PGD_STEPS = 7  # Madry et al.'s CIFAR-10 training budget


def goodfellow_loss(model, x, y, epsilon):
    """Goodfellow et al. (2014): half clean, half FGSM, 0.5 CE(x) + 0.5 CE(x_adversarial)."""
    x_adversarial = FGSM(model, epsilon, targeted=False, early_stop=False)(x, y).adversarial
    # One forward pass over clean and adversarial digits: the mean of the two halves.
    return F.cross_entropy(model(torch.cat([x, x_adversarial])), y.repeat(2))


def madry_loss(model, x, y, epsilon, steps=MADRY_PGD_STEPS):
    """Madry et al. (2018): the adversarial loss alone, CE(x_adversarial), where PGD (from a
    random start) solves the inner maximisation of their min-max problem."""
    pgd = PGD(model, epsilon, steps, targeted=False, early_stop=False)
    return F.cross_entropy(model(pgd(x, y).adversarial), y)


def smoothness_loss(model, x, epsilon):
    """Virtual adversarial training's term (Miyato et al. 2018), which reads no label: the
    KL divergence between the predictions at x and at the nearby x' that changes them most.

    Miyato et al. find x' by an L2 power iteration; here the course's FGSM finds it in the
    L-inf ball, pushing away from the model's own predicted class (its "virtual label").
    """
    with torch.no_grad():  # the prediction at x is the target, held fixed (their theta-hat)
        log_p = model(x).log_softmax(1)
    fgsm = FGSM(model, epsilon, targeted=False, early_stop=False)
    log_q = model(fgsm(x, log_p.argmax(1)).adversarial).log_softmax(1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
