"""The best any polling schedule can do when it KNOWS the finish-time distribution.

Why: a row of bench/polling.py that misses issue 15's targets is either the schedule's fault or
no schedule's: some distributions cannot be watched with few requests and little delay at once
(a uniform spread of width W needs about 2W/(9d) looks at mean delay d, wherever it sits). This
computes, for a known distribution on a fine grid, the schedule of look times that minimises
E[requests] + lambda * E[delay] exactly, and searches lambda for a given mean delay. The result is
the fewest requests per job at that delay: the frontier a learning schedule can only approach.

The optimisation: with looks at grid points, F/S the CDF/survival at a point and M the partial
first moment, the cost from a look at i (job still running) is

    C(i) = S(i) + lambda * M(i) + min_{j > i} [lambda * (t_j F_j - M_j) + C(j) - lambda * t_j * F(i)]

(one request at j, paid if the job ran past i; the delay of renders finishing in (i, j] is
t_j (F_j - F_i) - (M_j - M_i)). For a fixed j the bracket is a line in F(i), so the minimum over
j is a lower envelope of lines queried at decreasing F(i): a monotone convex-hull trick, O(n).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence

Draw = Callable[[float, float, random.Random], float]
STEP = 0.5  # seconds between candidate look times


class Grid:
    """A finish-time distribution as probability masses at t = k * STEP (k >= 1)."""

    def __init__(self, draws: Sequence[float], step: float = STEP) -> None:
        self.step = step
        n = math.ceil(max(draws) / step) + 1
        mass = [0.0] * (n + 1)
        for value in draws:
            mass[max(1, math.ceil(value / step))] += 1.0 / len(draws)
        self.t = [k * step for k in range(n + 1)]
        self.F, self.M = [], []
        cdf = moment = 0.0
        for k in range(n + 1):
            cdf += mass[k]
            moment += mass[k] * self.t[k]
            self.F.append(min(cdf, 1.0))
            self.M.append(moment)
        self.F[-1] = 1.0

    @classmethod
    def sampled(cls, draw: Draw, low: float, high: float, samples: int = 20_000, seed: int = 99) -> Grid:
        rng = random.Random(seed)
        return cls([draw(low, high, rng) for _ in range(samples)])

    def fixed(self, interval: float) -> tuple[float, float]:
        """Expected (requests, delay) of looking every `interval` seconds from submission."""
        polls = delay = 0.0
        previous = 0.0
        for k in range(1, len(self.t)):
            p = self.F[k] - self.F[k - 1]
            if p > 0:
                looks = math.ceil(self.t[k] / interval - 1e-9)
                polls += p * looks
                delay += p * (looks * interval - self.t[k])
            previous = self.F[k]
        assert previous >= 0.999
        return polls, delay

    def optimal(self, lam: float) -> tuple[float, float]:
        """Expected (requests, delay) of the schedule minimising requests + lam * delay."""
        t, cdf, moment = self.t, self.F, self.M
        n = len(t) - 1
        cost = [0.0] * (n + 1)
        choice = [n] * (n + 1)
        hull: deque[tuple[float, float, int]] = deque()  # (slope, intercept, j); slopes -lam*t_j, increasing

        def bad(a: tuple[float, float, int], b: tuple[float, float, int], c: tuple[float, float, int]) -> bool:
            # b (middle slope) is never below both a and c: drop it
            return (c[1] - a[1]) * (b[0] - a[0]) >= (b[1] - a[1]) * (c[0] - a[0])

        for i in range(n, -1, -1):
            survive = 1.0 - cdf[i]
            if i < n:
                x = cdf[i]
                # Queries only move to smaller x, where larger slopes win: lines at the back are done.
                while len(hull) >= 2 and hull[-1][0] * x + hull[-1][1] >= hull[-2][0] * x + hull[-2][1]:
                    hull.pop()
                slope, intercept, j = hull[-1]
                cost[i] = survive + lam * moment[i] + slope * x + intercept
                choice[i] = j
            if survive <= 1e-12 and i < n:
                cost[i], choice[i] = 0.0, n
            line = (-lam * t[i], lam * (t[i] * cdf[i] - moment[i]) + cost[i], i)
            # New lines have the largest slope so far: they belong at the small-x end (the deque's front).
            while len(hull) >= 2 and bad(line, hull[0], hull[1]):
                hull.popleft()
            hull.appendleft(line)
        polls = delay = 0.0
        i = 0
        while i < n and 1.0 - cdf[i] > 1e-12:
            j = choice[i]
            polls += 1.0 - cdf[i]
            delay += t[j] * (cdf[j] - cdf[i]) - (moment[j] - moment[i])
            i = j
        return polls, delay


def frontier(grids: Sequence[Grid], delay: float) -> tuple[float, float]:
    """Fewest mean requests per job (an equal mix of `grids`) at mean delay <= `delay`, and that delay.

    One lambda for the whole mix: spending a request where it buys the most delay is the optimal
    allocation across keys too.
    """
    def at(lam: float) -> tuple[float, float]:
        pairs = [grid.optimal(lam) for grid in grids]
        return sum(p for p, _ in pairs) / len(pairs), sum(d for _, d in pairs) / len(pairs)

    lo, hi = 1e-4, 1e3  # lambda: requests per second of delay
    best = at(hi)
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        polls, mean_delay = at(mid)
        if mean_delay <= delay:
            best, hi = (polls, mean_delay), mid
        else:
            lo = mid
        if hi / lo < 1.02:
            break
    return best
