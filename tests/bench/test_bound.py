"""The benchmark's "no schedule can do better" line must really be the optimum, or its verdicts lie."""

from __future__ import annotations

import random

import pytest

from bench.bound import Grid, frontier


def brute_force(grid: Grid, lam: float) -> float:
    """min E[requests] + lam * E[delay] over all look schedules on the grid, by plain O(n^2) DP."""
    t, cdf, moment = grid.t, grid.F, grid.M
    n = len(t) - 1
    cost = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        if 1.0 - cdf[i] <= 1e-12:
            continue
        cost[i] = min(1.0 - cdf[i] + lam * (t[j] * (cdf[j] - cdf[i]) - (moment[j] - moment[i])) + cost[j] for j in range(i + 1, n + 1))
    return cost[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("lam", [0.01, 0.1, 1.0])
def test_hull_trick_finds_the_brute_force_optimum(seed: int, lam: float) -> None:
    rng = random.Random(seed)
    draws = [rng.uniform(20, 60) if rng.random() < 0.5 else rng.expovariate(1 / 30) for _ in range(2000)]
    grid = Grid(draws, step=1.0)
    polls, delay = grid.optimal(lam)
    assert polls + lam * delay == pytest.approx(brute_force(grid, lam), rel=1e-9, abs=1e-9)


def test_a_uniform_spread_needs_about_2w_over_9d_looks() -> None:
    """The square-root law's estimate for a uniform spread of width W at mean delay d (README)."""
    grid = Grid([100 + 300 * (i + 0.5) / 6000 for i in range(6000)])  # uniform(100, 400)
    polls, delay = frontier([grid], 10.0)
    assert delay <= 10.0 and delay == pytest.approx(10.0, rel=0.05)
    assert polls == pytest.approx(1 + 2 * 300 / (9 * delay), rel=0.15)
    fixed_polls, fixed_delay = grid.fixed(10.0)
    # finish times sit on the grid's next point: delays read short by half a step, the bound's alike
    assert fixed_polls == pytest.approx(25.5, rel=0.01) and fixed_delay == pytest.approx(5.0 - grid.step / 2, rel=0.02)
