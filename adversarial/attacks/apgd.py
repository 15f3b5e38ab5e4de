"""Auto-PGD, L-inf (Croce and Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020): PGD with momentum and no step size
to tune, and the DLR loss, which rescaling the logits cannot hide from.

    APGD(model, epsilon)(x, labels)          # APGD-CE; loss="dlr" for APGD-DLR
    APGDTargeted(model, epsilon)(x, labels)  # APGD-T: the targeted DLR, one run per target

As every attack in gradient.py, the model sees each iterate as saved (on the 8-bit grid,
inside the ball), the gradient passing straight through the rounding and any defenses.
"""

import math

import torch

from adversarial.attacks.gradient import Attack
from adversarial.attacks.shared import (
    AttackResult,
    input_gradient,
    mean_cross_entropy,
    straight_through,
    uniform_start,
)
from adversarial.models import device_of

# The denominators' guard: a ratio of logit differences, whatever the logits' scale.
DLR_GUARD = 1e-12


def checkpoints(steps):
    """The iterations where APGD may halve its step size, as AutoAttack's code places them
    (autopgd_base.py): the first after int(0.22 * steps) steps, each next period shorter
    by int(0.03 * steps), never under int(0.06 * steps) (each at least 1), while within
    the budget. At 100 steps these are the paper's w_j = ceil(p_j * 100) (22, 41, ..., 99,
    from p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)); for other budgets the code's
    integer periods differ from the paper's fractions: at 20 steps 4, 7, 9, then every
    step from 10 on. We follow the code, which is what "AutoAttack" figures come from.

    With 0 first (x_0, where the first period starts); in whole hundredths, so that no
    float product such as 0.22 * 100 = 22.000000000000004 decides a floor."""
    period = max(22 * steps // 100, 1)
    shortest, shrink = max(6 * steps // 100, 1), max(3 * steps // 100, 1)
    w = [0]
    while w[-1] + period < steps:
        w.append(w[-1] + period)
        period = max(period - shrink, shortest)
    return w


def dlr(logits, labels):
    """(N,) untargeted Difference of Logits Ratio, the mean over every model and view:
    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), pi sorting the logits decreasingly.

    Positive once the image is misclassified. Shifting or scaling the logits leaves it
    unchanged: a model cannot mask its gradient by inflating its logits (the softmax of
    cross-entropy saturates, and its gradient vanishes, at large logits; this does not)."""
    z_y = logits.gather(-1, labels.expand(logits.shape[:2])[..., None])[..., 0]
    others = logits.scatter(-1, labels.expand(logits.shape[:2])[..., None], -math.inf)
    z = logits.sort(-1, descending=True).values
    return (-(z_y - others.amax(-1)) / (z[..., 0] - z[..., 2] + DLR_GUARD)).mean(0)


def targeted_dlr(logits, labels, targets):
    """(N,) targeted DLR towards `targets`, from the true classes `labels`, the mean over
    every model and view: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2). Raising it lowers
    z_y below z_t; the denominator, as in the untargeted DLR, makes it scale-free."""
    z_y = logits.gather(-1, labels.expand(logits.shape[:2])[..., None])[..., 0]
    z_t = logits.gather(-1, targets.expand(logits.shape[:2])[..., None])[..., 0]
    z = logits.sort(-1, descending=True).values
    return (-(z_y - z_t) / (z[..., 0] - (z[..., 2] + z[..., 3]) / 2 + DLR_GUARD)).mean(0)


class APGD(Attack):
    """Auto-PGD (Croce and Hein 2020, Algorithm 1): from a random point of the ball, signed
    steps of eta = 2 * epsilon with momentum, raising a loss f. At each checkpoint
    (`checkpoints`) each image whose search stalled, by either of the paper's conditions,
    halves its eta and restarts from the best point it has found, x_max. As AutoAttack's
    code: condition 1 fires when at most rho of the period's steps raised f, and
    condition 2 cannot fire at the first checkpoint (there is no earlier one to compare).

    Untargeted by default: `labels` are the true classes, to move away from. loss: "ce",
    the cross-entropy to the labels (raised; lowered with targeted=True), or "dlr", the
    untargeted DLR; or any function (logits, labels) -> (N,) loss to raise.
    rho: condition 1's share of steps that must raise the loss. momentum: the paper's
    alpha, the weight of the new step against the last move (1 - alpha).
    seed: as PGD's, the random start of each image from the seed and the image itself.
    steps counts gradient steps (forward and backward passes), as for PGD; on_step sees f.
    As for every attack, the result is each image at its first success (early_stop), else
    the last iterate.
    """

    def __init__(
        self, model, epsilon, steps=100, loss="ce", rho=0.75, momentum=0.75, seed=None, **options
    ):
        options.setdefault("targeted", False)
        super().__init__(model, epsilon, steps, **options)
        if not callable(loss) and loss not in ("ce", "dlr"):
            raise ValueError(f"loss must be 'ce', 'dlr' or a function, not {loss!r}")
        if loss == "dlr" and self.targeted:  # the targeted DLR needs the true class too
            raise ValueError("loss='dlr' is untargeted: for the targeted DLR use APGDTargeted")
        self.loss = loss
        self.rho = rho
        self.momentum = momentum
        self.seed = seed

    def objective(self, logits, labels):
        """f, the (N,) loss that APGD raises."""
        if callable(self.loss):
            return self.loss(logits, labels)
        if self.loss == "dlr":
            return dlr(logits, labels)
        cross_entropy = mean_cross_entropy(logits, labels)
        # Towards the target: lower its cross-entropy; away from a class: raise it.
        return -cross_entropy if self.targeted else cross_entropy

    def __call__(self, x, labels):
        x, labels, ball, score = self.start(x, labels)
        per_image = (len(x), *[1] * (x.dim() - 1))  # one eta per image, broadcast on pixels
        w = checkpoints(self.steps)
        since = dict(zip(w[1:], w[:-1], strict=True))  # w_j -> w_{j-1}

        delta = ball.project(uniform_start(x, self.epsilon, self.seed))
        delta_previous = delta
        eta = torch.full(per_image, 2.0 * self.epsilon, device=x.device)
        f_max = torch.full((len(x),), -math.inf, device=x.device)  # x_0 becomes x_max
        delta_max, grad_max = delta, torch.zeros_like(delta)
        f_previous = torch.full_like(f_max, math.inf)  # x_0 has no predecessor to beat
        increases = torch.zeros_like(f_max)  # steps that raised f since the last checkpoint
        f_max_at_checkpoint = f_max
        # Halved at the last checkpoint: as if at x_0, so condition 2 waits for a second one.
        halved = torch.ones_like(f_max, dtype=torch.bool)
        for k in range(self.steps):
            delta.requires_grad_(True)
            x_saved = straight_through(x + delta, ball.saved)  # the image as its PNG holds it
            logits = self.logits(x_saved)
            f = self.objective(logits, labels)  # (N,): f(x_k)
            if score.record(k, x_saved, logits, f):
                return score.result()  # every image fooled
            grad = input_gradient(f, delta)
            with torch.no_grad():
                delta, f = delta.detach(), f.detach()
                increases += f > f_previous
                better = f > f_max
                f_max = torch.where(better, f, f_max)
                delta_max = torch.where(better.view(per_image), delta, delta_max)
                grad_max = torch.where(better.view(per_image), grad, grad_max)

                if k in since:  # checkpoint w_j: did each image's search stall since w_{j-1}?
                    # Condition 1: the loss rose in at most rho of the steps (it oscillates).
                    oscillating = increases <= self.rho * (k - since[k])
                    # Condition 2: eta was kept last time, and x_max has not improved since.
                    stuck = ~halved & (f_max == f_max_at_checkpoint)
                    halved = oscillating | stuck
                    # Smaller steps, from the best point: its gradient comes with it, and the
                    # next step's rise is measured from its loss.
                    eta = torch.where(halved.view(per_image), eta / 2, eta)
                    delta = torch.where(halved.view(per_image), delta_max, delta)
                    grad = torch.where(halved.view(per_image), grad_max, grad)
                    f = torch.where(halved, f_max, f)
                if k == 0 or k in since:  # a new period starts
                    increases = torch.zeros_like(increases)
                    f_max_at_checkpoint = f_max

                # z = P(x_k + eta sign(grad)), then x_{k+1} = P(x_k + alpha (z - x_k) +
                # (1 - alpha)(x_k - x_{k-1})); the first step has no move to follow yet.
                alpha = 1.0 if k == 0 else self.momentum
                z = ball.project(delta + eta * grad.sign())
                step = alpha * (z - delta) + (1 - alpha) * (delta - delta_previous)
                delta, delta_previous = ball.project(delta + step), delta
                f_previous = f
        with torch.no_grad():
            x_final = ball.saved(x + delta)
            logits = self.logits(x_final)
            score.record(self.steps, x_final, logits, self.objective(logits, labels))
            return score.result()


class APGDTargeted(Attack):
    """APGD-T, as AutoAttack runs it (Croce and Hein 2020): for each of the `target_classes`
    classes the clean image ranks highest after its true class (the mean logits over models
    and views; at most classes - 1), one APGD run raising the targeted DLR towards it.

    Success is untargeted, as AutoAttack counts it: the image is no longer classified as
    its true class `labels`. An image fooled by one target is not attacked with the next.
    The result: the image from the run that fooled it (else from the last run); steps, the
    gradient steps of all its runs together. Each run draws its own random start (the seed
    and the target's rank); on_step is called by each run, on the images it attacks.
    """

    def __init__(self, model, epsilon, steps=100, target_classes=9, seed=None, **options):
        super().__init__(model, epsilon, steps, targeted=False, **options)
        self.target_classes = target_classes
        self.seed = seed

    def __call__(self, x, labels):
        device = device_of(self.models[0])
        x, labels = x.to(device), labels.to(device)
        with torch.no_grad():
            clean = self.logits(x).mean(0)  # (N, classes)
        # The true class out of the ranking: the targets are the 2nd, 3rd, ... classes.
        others = clean.scatter(1, labels[:, None], -math.inf)
        rank_count = min(self.target_classes, clean.shape[1] - 1)
        targets = others.topk(rank_count, dim=1).indices  # (N, rank_count)

        todo = torch.ones(len(x), dtype=torch.bool, device=device)  # not fooled yet
        steps = torch.zeros(len(x), dtype=torch.long, device=device)
        adversarial, success = torch.empty_like(x), torch.zeros_like(todo)
        best_probability = torch.zeros(len(x), device=device)
        probabilities = views_fooled = None
        for rank in range(rank_count):
            t = targets[todo, rank]
            run = APGD(
                self.models,
                self.epsilon,
                self.steps,
                loss=lambda logits, y, t=t: targeted_dlr(logits, y, t),
                seed=None if self.seed is None else f"{self.seed}/target {rank}",
                defenses=self.defenses,
                early_stop=self.early_stop,
                on_step=self.on_step,
            )
            result = run(x[todo], labels[todo])
            if probabilities is None:
                probabilities = torch.zeros(len(x), *result.probabilities.shape[1:], device=device)
                views_fooled = torch.zeros(result.views_fooled.shape[0], len(x), dtype=torch.bool)
                views_fooled = views_fooled.to(device)
            adversarial[todo] = result.adversarial
            success[todo] = result.success
            steps[todo] += result.steps
            probabilities[todo] = result.probabilities
            best_probability[todo] = torch.maximum(best_probability[todo], result.best_probability)
            views_fooled[:, todo] = result.views_fooled
            todo = todo & ~success
            if not todo.any():
                break
        return AttackResult(
            adversarial, success, steps, probabilities, best_probability, views_fooled
        )
