"""Gilbert-Elliott bursty loss, turned into retransmissions.

Theory of operation. Radio loss on 2G comes in bursts and link-layer ARQ hides it from TCP: a
lost block is sent again after a delay, so loss shows up as delay spikes, not as missing bytes.
We model it with the two-state Gilbert-Elliott chain netem uses (`loss gemodel p r 1-h 1-k`):
before each transmission attempt the chain steps (GOOD -> BAD with `p`, BAD -> GOOD with `r`),
then the attempt is lost with the state's loss probability. A packet is attempted until one
attempt gets through; every lost attempt costs the profile's retransmission delay.

The chain steps per attempt, not per second, so idle time does not change it. The state a packet
starts from is the state of the previous packet's successful attempt, so a fresh chain is drawn
from the stationary distribution of "state at a success" (`success_distribution`); then every
transfer, first or fiftieth, starts from the same distribution, and `expected_losses_per_packet`
is exact for the model in `model.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

GOOD = 0
BAD = 1

# attempts beyond which a packet is declared through anyway: keeps every loop bounded even for
# a profile whose BAD state loses everything and never leaves (r = 0 is rejected, but tiny r
# would otherwise make runs arbitrarily long)
MAX_ATTEMPTS = 64


@dataclass(frozen=True, slots=True)
class GilbertElliott:
    """Loss chain parameters, named as in netem's `gemodel` (p, r, 1-h, 1-k)."""

    p: float
    r: float
    loss_bad: float = 1.0
    loss_good: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p", "loss_bad", "loss_good"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if not 0.0 < self.r <= 1.0:
            raise ValueError(f"r must be within (0, 1], got {self.r!r}")
        if self.loss_good >= 1.0:
            raise ValueError("loss_good must be below 1, or no attempt could ever get through")

    @classmethod
    def from_mean(cls, loss: float, burst: float) -> GilbertElliott:
        """The simple Gilbert chain with mean loss `loss` in bursts of mean length `burst`."""
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be within [0, 1), got {loss!r}")
        if burst < 1.0:
            raise ValueError(f"burst must be at least 1 packet, got {burst!r}")
        r = 1.0 / burst
        return cls(p=r * loss / (1.0 - loss), r=r)

    @property
    def stationary_bad(self) -> float:
        """Share of attempts made in the BAD state in the long run."""
        return self.p / (self.p + self.r)

    @property
    def mean_loss(self) -> float:
        """Share of attempts lost in the long run."""
        bad = self.stationary_bad
        return bad * self.loss_bad + (1.0 - bad) * self.loss_good

    def _solve(self) -> tuple[tuple[float, float], tuple[tuple[float, float], ...]]:
        """Per starting state: expected lost attempts before a success, and the state at it.

        With P the step matrix and L = diag(loss), a packet starting in state s loses
        E = (I - P L)^-1 P l attempts on average and succeeds in a state drawn from
        S = (I - P L)^-1 P (I - L). Two states, so the inverse is written out.
        """
        p, r, lb, lg = self.p, self.r, self.loss_bad, self.loss_good
        step = ((1.0 - p, p), (r, 1.0 - r))
        lose = (lg, lb)
        a = [[(1.0 if i == j else 0.0) - step[i][j] * lose[j] for j in range(2)] for i in range(2)]
        det = a[0][0] * a[1][1] - a[0][1] * a[1][0]
        inv = ((a[1][1] / det, -a[0][1] / det), (-a[1][0] / det, a[0][0] / det))
        pl = [sum(step[i][j] * lose[j] for j in range(2)) for i in range(2)]
        expected = (
            inv[0][0] * pl[0] + inv[0][1] * pl[1],
            inv[1][0] * pl[0] + inv[1][1] * pl[1],
        )
        pk = [[step[i][j] * (1.0 - lose[j]) for j in range(2)] for i in range(2)]
        success = tuple(
            (
                inv[i][0] * pk[0][0] + inv[i][1] * pk[1][0],
                inv[i][0] * pk[0][1] + inv[i][1] * pk[1][1],
            )
            for i in range(2)
        )
        return expected, success

    @property
    def success_distribution(self) -> tuple[float, float]:
        """Stationary distribution of the chain's state at successful attempts (GOOD, BAD)."""
        _, success = self._solve()
        to_bad_from_good = success[GOOD][BAD]
        to_good_from_bad = success[BAD][GOOD]
        total = to_bad_from_good + to_good_from_bad
        if total == 0.0:
            return (1.0, 0.0)
        return (to_good_from_bad / total, to_bad_from_good / total)

    @property
    def expected_losses_per_packet(self) -> float:
        """Expected lost attempts per packet for a chain in its success distribution."""
        expected, _ = self._solve()
        good, bad = self.success_distribution
        return good * expected[GOOD] + bad * expected[BAD]


class LossChain:
    """A running Gilbert-Elliott chain with its own seeded generator."""

    __slots__ = ("_model", "_rng", "state")

    def __init__(self, model: GilbertElliott | None, rng: random.Random) -> None:
        self._model = model
        self._rng = rng
        self.state = GOOD
        if model is not None and rng.random() < model.success_distribution[BAD]:
            self.state = BAD

    def losses_before_success(self) -> int:
        """Attempts lost before the next packet gets through (0 when the link is lossless)."""
        model = self._model
        if model is None:
            return 0
        rng = self._rng
        lost = 0
        while lost < MAX_ATTEMPTS - 1:
            if self.state == GOOD:
                if rng.random() < model.p:
                    self.state = BAD
            elif rng.random() < model.r:
                self.state = GOOD
            loss = model.loss_bad if self.state == BAD else model.loss_good
            if loss == 0.0 or rng.random() >= loss:
                return lost
            lost += 1
        return lost
