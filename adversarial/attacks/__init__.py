"""Attacks on image classifiers, one class per attack, one module per family.

    decision.py  HopSkipJump: label-only, given a function from images to their top class
                 (model_decision), never the model; every query counted
    apgd.py      Auto-PGD (APGD, APGDTargeted): PGD with a step size halved on schedule,
                 and the DLR loss, which scaled logits cannot hide from
    eot.py       EOT: PGD on the expected loss over a distribution of transformations
                 (an example that survives being photographed)
    gradient.py  the tutorial's SGD, FGSM and PGD: white-box, L-inf, a budget epsilon;
                 PGDL2, the same in an L2 ball
    minimal.py   no budget, the smallest change: DeepFool (L2, L-inf), CarliniWagnerL2,
                 GreedyPixels (L0); sizes in L2, L-inf, L0 and rho
    noise.py     the baseline: random signs of the same size
    query.py     the Square Attack: score-only, given a function from images to
                 probabilities (model_query), never the model
    shared.py    what every attack uses: the 8-bit image inside the epsilon ball, the
                 straight-through pass (BPDA), and the scoreboard of who is fooled

Every other attack takes any nn.Module on [0, 1] pixels that returns logits (or a list of them,
an ensemble) and returns an AttackResult judged on the image as it would be saved.
"""

from adversarial.attacks.apgd import APGD, APGDTargeted
from adversarial.attacks.decision import HopSkipJump, model_decision
from adversarial.attacks.eot import EOT
from adversarial.attacks.gradient import FGSM, PGD, PGDL2, TutorialSGD
from adversarial.attacks.minimal import CarliniWagnerL2, DeepFool, GreedyPixels
from adversarial.attacks.noise import random_signs
from adversarial.attacks.query import Square, model_query
from adversarial.attacks.shared import (
    AttackResult,
    L2Ball,
    LinfBall,
    attack_labels,
    quantize,
    straight_through,
)

__all__ = [
    "APGD",
    "EOT",
    "FGSM",
    "PGD",
    "PGDL2",
    "APGDTargeted",
    "AttackResult",
    "CarliniWagnerL2",
    "DeepFool",
    "GreedyPixels",
    "HopSkipJump",
    "L2Ball",
    "LinfBall",
    "Square",
    "TutorialSGD",
    "attack_labels",
    "model_decision",
    "model_query",
    "quantize",
    "random_signs",
    "straight_through",
]
