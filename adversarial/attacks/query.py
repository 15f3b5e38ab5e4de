"""Attacks that only ask: the model is a function from images to probabilities, as behind a
web API. No gradients, no weights, no surrogate model: every answer costs one query.

    query = model_query(model)     # query(x) -> probabilities; the only door to the model
    result = Square(query, epsilon=4 / 255, queries=1000)(x, labels)
"""

import math

import torch

from adversarial.attacks.shared import AttackResult, LinfBall

# The paper's schedule: the square's share of the image is halved after these many
# queries of a 10,000-query budget (and at the same fractions of any other budget).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def model_query(model, log=False):
    """query(x) -> (N, classes) probabilities: all an attacker behind an API is given.

    In float64, so that a class the model all but rules out still has a probability above
    zero down to about 1e-308, and its logarithm stays finite. Beyond that even float64
    rounds it to 0: logits 745 apart (a saturated model) give the same answer as logits
    7450 apart, and Square's margin can no longer tell them apart (an API that rounds its
    probabilities, to 4 decimals say, hides far smaller margins). log=True: float64
    log-probabilities instead, as an attacker who reads logits (AutoAttack's Square)
    gets them: log p_i - log p_j is z_i - z_j exactly, at any scale.
    """

    @torch.inference_mode()
    def query(x):
        logits = model(x).double()
        return logits.log_softmax(-1) if log else logits.softmax(-1)

    return query


def square_share(p_init, query_index, budget):
    """p: the share of the image's pixels the next square covers, shrinking on schedule."""
    on_paper_scale = int(query_index / budget * 10_000)
    return p_init / 2 ** sum(on_paper_scale > halving for halving in HALVINGS)


class Square:
    """The Square Attack, L-inf (Andriushchenko, Croce, Flammarion and Hein, ECCV 2020):
    random search at the corners of the epsilon ball.

    Start from vertical stripes (every column of every channel at +epsilon or -epsilon).
    Then, query after query, paint one random square with a new colour (+-epsilon per
    channel) and keep the change only if the loss falls: the margin log p(label) - the
    largest other log p (untargeted), or the cross-entropy to the target (targeted). The
    squares shrink as the budget is spent.

    query(x) -> probabilities is all the attack is given (log_probabilities=True: it
    returns log-probabilities, model_query(model, log=True), and the margin is exact).
    Queries are counted per image: the image itself (one already fooled stops there), the
    stripes, then one per square for each image not yet fooled, up to `queries` in all.
    Every image queried is on the 8-bit grid within epsilon, so what the model answered
    is what the PNG holds.
    """

    def __init__(
        self,
        query,
        epsilon,
        queries=1000,
        p_init=0.05,
        targeted=False,
        seed=0,
        log_probabilities=False,
    ):
        if epsilon * 255 < 1 - 1e-6:  # the ball's corners would be the image itself
            raise ValueError(f"epsilon must be at least one 8-bit level (1/255), got {epsilon}")
        self.query = query
        self.epsilon = epsilon
        self.queries = queries
        self.p_init = p_init
        self.targeted = targeted
        self.seed = seed
        self.log_probabilities = log_probabilities

    @torch.inference_mode()  # forward passes only: no graph is ever built
    def __call__(self, x, labels):
        generator = torch.Generator().manual_seed(self.seed)
        n, channels, _, width = x.shape
        ball = LinfBall(x, self.epsilon)  # its corners: ball.lowest and ball.highest
        used = torch.zeros(n, dtype=torch.long, device=x.device)

        # Query 1: the image itself.
        x_best = x.clone()
        p_best = self.ask(x_best, used, torch.arange(n, device=x.device))
        loss_best = self.loss(p_best, labels)
        fooled = self.fooled(p_best, labels)
        best_probability = self.success_probability(p_best, labels)

        # Query 2: vertical stripes, taken whatever their loss.
        attacked = (~fooled).nonzero()[:, 0]
        if len(attacked) and self.queries > 1:
            stripes = self.signs((len(attacked), channels, 1, width), generator).to(x.device)
            x_best[attacked] = torch.where(
                stripes > 0, ball.highest[attacked], ball.lowest[attacked]
            )
            p_best[attacked] = self.ask(x_best[attacked], used, attacked)
            self.keep_scores(attacked, p_best, loss_best, fooled, best_probability, labels)

        for query_index in range(2, self.queries):
            attacked = (~fooled).nonzero()[:, 0]  # only the images not yet fooled are asked
            if not len(attacked):
                break
            # The paper's iteration i counts from 0 after the stripes, of a budget without
            # the clean image's query: p_init for the first square.
            share = square_share(self.p_init, query_index - 2, self.queries - 1)
            side = self.side(share, x.shape)
            x_new = self.painted(x_best, attacked, ball, side, generator)
            p_new = self.ask(x_new, used, attacked)
            loss_new = self.loss(p_new, labels[attacked])
            better = loss_new < loss_best[attacked]  # strictly: ties keep the old image
            kept = attacked[better]
            x_best[kept], p_best[kept] = x_new[better], p_new[better]
            self.keep_scores(kept, p_best, loss_best, fooled, best_probability, labels)
            success = self.success_probability(p_new, labels[attacked])
            best_probability[attacked] = best_probability[attacked].maximum(success)

        return AttackResult(
            adversarial=x_best,
            success=fooled,
            steps=used,
            probabilities=self.probabilities(p_best).float(),
            best_probability=best_probability.float(),
            views_fooled=fooled[None],
        )

    def ask(self, x, used, images):
        """The model's probabilities for x, the images of those indices; one query each."""
        used[images] += 1
        return self.query(x)

    def keep_scores(self, images, p_best, loss_best, fooled, best_probability, labels):
        """In place: the loss, verdict and best success probability of `images`, from their
        probabilities in p_best (the search's state, one row per image)."""
        loss_best[images] = self.loss(p_best[images], labels[images])
        fooled[images] = self.fooled(p_best[images], labels[images])
        success = self.success_probability(p_best[images], labels[images])
        best_probability[images] = best_probability[images].maximum(success)

    def probabilities(self, scores):
        """What the query answered, as probabilities."""
        return scores.exp() if self.log_probabilities else scores

    def loss(self, scores, labels):
        """What the search lowers: the margin (untargeted) or the cross-entropy (targeted)."""
        if self.log_probabilities:
            log_p = scores
        else:
            log_p = scores.clamp_min(torch.finfo(scores.dtype).tiny).log()
        own = log_p.gather(1, labels[:, None])[:, 0]
        if self.targeted:
            return -own
        others = log_p.scatter(1, labels[:, None], -math.inf).amax(1)
        return own - others

    def fooled(self, p, labels):
        predicted = p.argmax(1)
        return predicted == labels if self.targeted else predicted != labels

    def success_probability(self, scores, labels):
        own = self.probabilities(scores).gather(1, labels[:, None])[:, 0]
        return own if self.targeted else 1 - own

    @staticmethod
    def signs(shape, generator):
        return torch.randint(0, 2, shape, generator=generator) * 2 - 1

    @staticmethod
    def side(share, shape):
        """The square's side for a share p of the pixels, at least 1, less than the image."""
        _, _, height, width = shape
        return min(max(round(math.sqrt(share * height * width)), 1), min(height, width) - 1)

    def painted(self, x_best, attacked, ball, side, generator):
        """The images `attacked` of x_best, each with a side x side square at a random place
        painted a random colour, +-epsilon per channel (a corner of the ball), redrawn
        until it changes the image: a repainting that changes nothing wastes a query."""
        n, (_, channels, height, width), device = len(attacked), x_best.shape, x_best.device
        top = torch.randint(0, height - side + 1, (n, 1), generator=generator).to(device)
        left = torch.randint(0, width - side + 1, (n, 1), generator=generator).to(device)
        span = torch.arange(side, device=device)
        # Index tensors that pick each image's square: (n, channels, side, side) values.
        rows = (top + span)[:, None, :, None]
        columns = (left + span)[:, None, None, :]
        every_channel = torch.arange(channels, device=device)[None, :, None, None]
        square = (attacked[:, None, None, None], every_channel, rows, columns)
        before, lowest, highest = x_best[square], ball.lowest[square], ball.highest[square]

        after, redraw = before, torch.ones(n, dtype=torch.bool, device=device)
        while redraw.any():
            colour = self.signs((n, channels, 1, 1), generator).to(device)
            repainted = torch.where(colour > 0, highest, lowest)
            after = torch.where(redraw[:, None, None, None], repainted, after)
            redraw = (after == before).flatten(1).all(1)
        x_new = x_best[attacked]
        x_new[
            (torch.arange(n, device=device)[:, None, None, None], every_channel, rows, columns)
        ] = after
        return x_new
