"""The baseline every attack must beat: random noise of the same size."""

import torch

from adversarial.attacks.shared import LinfBall


def random_signs(x, epsilon, seed=0):
    """Each pixel channel moved by +epsilon or -epsilon at random (as saved: on the 8-bit
    grid, inside the ball): the largest L-inf change there is, in no chosen direction."""
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, x.shape, generator=generator).to(x) * 2 - 1
    return LinfBall(x, epsilon).saved(x + epsilon * signs)
