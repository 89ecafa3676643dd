"""When to look at a running render next: polls placed by the hazard of observed render times.

Why: a fixed schedule derived from a model's typical window is only right while renders stay
inside that window. Queues back up, new model versions get faster, failed nodes restart renders;
then a window-shaped schedule either floods the provider or lets a finished video sit for
minutes. So, per (provider, model, duration, resolution), we keep the render times of finished
jobs (persisted, recent ones weighted more, seeded with the provider's typical window) and place
each next look where the conditional probability of "it finished since the last look" has built
up enough to be worth a request.

The rule: from the current age `t` of a running job, the next gap `g` solves

    g * P(t < T <= t + g | T > t) = D

which is the square-root law of optimal inspection (gap ~ sqrt(D / hazard)): looks gather where
completions happen and thin out where they do not. `D` is chosen per key (`choose_target`): the
looks it places are evaluated exactly on the key's own recent renders, against polling every
10 s, so that requests and delay use the same share of their budgets (0.3x the requests, 1.1x the
delay), corrected by the delay the key's renders really had (half of each one's last gap). The
distribution is a mix of uniform kernels: each observation (widened where observations are sparse,
so a hole never becomes a long gap where renders do finish), the typical window and the provider's
other models (both fading as the key's own renders accumulate), and a thin "surprise" everywhere
with a tail (survival ~ 1/sqrt(age)) past everything seen. Bounds: a gap never exceeds half of
max(age, median) (so a render that runs outside everything observed is still found within a
bounded fraction of its wait), nor `MAX_GAP`; never goes under `MIN_GAP`; a short early look
catches fast finishes while nothing rules them out (no render of the key seen yet, or some seen
done that early). Jitter spreads 10,000 jobs apart. bench/polling.py measures all this, and
bench/bound.py what no schedule can beat.

Provider hints win: `Retry-After`/poll-after is a floor; a progress percentage (OpenAI's
`progress`, Replicate's logs) says roughly when the render ends, and the look is placed by the
same law inside that window; a provider whose webhooks arrive is looked at rarely, as the webhook
nudges the job (recorded in the store, so workers that never see a callback themselves learn it
from the gateway that receives them). Every prior and bound is in model seconds and multiplied by
`POLL_TIME_SCALE`; observations are stored in model seconds (wall / scale).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Protocol

from bot.config import Settings

log = logging.getLogger(__name__)

HISTORY = 64  # observations kept (and loaded) per key
DECAY = 0.96  # weight of an observation per newer one after it: recent renders count more
PRIOR_WEIGHT = 2.0  # the typical window counts as this many observations
FAMILY_WEIGHT = 4.0  # at most this much weight borrowed from the provider's other models
SURPRISE = 0.04  # share of probability spread thinly from SURPRISE_LOW * low on (see distribution())
SURPRISE_LOW = 0.1
TAIL_DOUBLINGS, TAIL_KEEP = 8, 0.7  # the surprise's tail: 2^9 times the longest render seen, survival ~ 1/sqrt(age)
KERNEL = 0.03  # each observation is smeared by +-5 % (renders are never exactly alike)
REFERENCE_GAP = 10.0  # model seconds: the fixed polling we measure against (issue 15)
POLL_SHARE = 0.3  # aim: this share of the reference's requests ...
DELAY_SHARE = 1.1  # ... at this share of its mean delay (see Schedule.delay_target)
MAX_DELAY_SHARE = 1.5  # never aim at a mean delay above this share of the reference's
FEEDBACK_MIN, FEEDBACK_RECENT = 6, 16  # renders of a key before (and over which) plans are checked
FEEDBACK_RANGE = (0.8, 1.5)  # how far the measured delay may correct a plan
NEIGHBOURS = 3  # an observation is spread over at least the distance to its 3rd-nearest (see _widen_sparse)
FADE_AFTER = 2.0  # the prior's and borrowed weight halve once the key's own renders weigh this much
RETARGET_EVERY = 4  # a key's look target is chosen again after this many of its renders finished ...
RETARGET_SECONDS = 30.0  # ... at most this often (wall seconds: choosing costs ~20-40 ms of CPU)
FAMILY_REFRESH = 8  # a key's distribution is rebuilt after this many renders of its provider's other models
MIN_GAP = 2.0  # model seconds
MAX_GAP = 600.0  # model seconds
CAP_FRACTION = 0.5  # a gap is at most half of max(age, median render time)
EARLY_FRACTION = 0.25  # the early look, as a fraction of the 5 % quantile
EARLY_MASS = 0.01  # the early look is skipped once less than this is seen finishing before 2x it
JITTER = 0.1  # +-10 %
PROGRESS_MIN = 10  # percentages below this are too noisy to estimate the end from
PROGRESS_SPREAD = 0.25  # a progress-based end estimate is trusted to +-25 %
PROGRESS_FLOOR_MASS = 0.1  # the even floor inside that window, relative to the learned mass there
PROGRESS_FLOOR = 0.5  # progress may shorten a gap to this share of the distribution's, no further
WEBHOOK_TRUST_SECONDS = 3600.0  # wall seconds a received webhook keeps its provider "working"
WEBHOOK_GAP = (60.0, 900.0)  # model seconds: the gap range while webhooks nudge us
WEBHOOK_CACHE_SECONDS = 30.0  # wall seconds a read of the shared webhook health is reused


class RenderKey(NamedTuple):
    """What render times are learned per: the same model at the same length and size."""

    provider: str
    model: str
    duration: float
    resolution: str


class ObservationStore(Protocol):
    """Persistence for observations (storage/render_times.py implements it)."""

    async def add(self, key: tuple[str, str, float, str], low: float, high: float, *, now: float) -> None: ...

    async def recent(self, per_key: int) -> list[tuple[tuple[str, str, float, str], float, float]]: ...

    async def webhook_seen(self, provider: str, *, now: float | None = None) -> None: ...

    async def webhooks_seen(self) -> dict[str, float]: ...


class Distribution:
    """A piecewise-linear CDF built from uniform kernels: (start, end, weight) triples."""

    def __init__(self, parts: list[tuple[float, float, float]]) -> None:
        points = sorted({p for a, b, _ in parts for p in (a, b)})
        slope_change: dict[float, float] = {}
        for a, b, w in parts:
            density = w / (b - a)
            slope_change[a] = slope_change.get(a, 0.0) + density
            slope_change[b] = slope_change.get(b, 0.0) - density
        self.points = points
        self.cdf = [0.0]
        slope = 0.0
        for left, right in itertools.pairwise(points):
            slope += slope_change.get(left, 0.0)
            self.cdf.append(self.cdf[-1] + max(slope, 0.0) * (right - left))
        self.total = self.cdf[-1] or 1.0
        # Partial first moment at each point (unnormalised), for the expected delay of a plan of looks.
        self.moment = [0.0]
        for i in range(len(points) - 1):
            mass = self.cdf[i + 1] - self.cdf[i]
            self.moment.append(self.moment[-1] + mass * (points[i] + points[i + 1]) / 2)
        self.mean = self.moment[-1] / self.total
        self.look_target: float | None = None  # the Schedule's c^2 for this distribution, once chosen
        self.early = 0.0  # the early look's age, or 0 for none (set by the Schedule)

    def F(self, t: float) -> float:  # noqa: N802 - the usual name of a CDF
        """P(T <= t)."""
        points = self.points
        if t <= points[0]:
            return 0.0
        if t >= points[-1]:
            return 1.0
        i = bisect.bisect_right(points, t) - 1
        left, right = points[i], points[i + 1]
        value = self.cdf[i] + (self.cdf[i + 1] - self.cdf[i]) * (t - left) / (right - left)
        return value / self.total

    def M(self, t: float) -> float:  # noqa: N802 - as F
        """E[T; T <= t], the partial mean (density constant between points)."""
        points = self.points
        if t <= points[0]:
            return 0.0
        if t >= points[-1]:
            return self.mean
        i = bisect.bisect_right(points, t) - 1
        left, right = points[i], points[i + 1]
        density = (self.cdf[i + 1] - self.cdf[i]) / (right - left)
        return (self.moment[i] + density * (t * t - left * left) / 2) / self.total

    def quantile(self, q: float) -> float:
        target = q * self.total
        i = bisect.bisect_left(self.cdf, target)
        if i <= 0:
            return self.points[0]
        if i >= len(self.cdf):
            return self.points[-1]
        left, right = self.cdf[i - 1], self.cdf[i]
        share = (target - left) / (right - left) if right > left else 0.0
        return self.points[i - 1] + share * (self.points[i] - self.points[i - 1])


class RenderTimes:
    """Observed render times of one key (model seconds, interval-censored: finished in (low, high])."""

    def __init__(self) -> None:
        self.observed: deque[tuple[float, float]] = deque(maxlen=HISTORY)
        self.added = 0  # ever, not only those kept

    def add(self, low: float, high: float) -> None:
        self.added += 1
        self.observed.append((max(0.0, min(low, high)), max(low, high, 0.001)))

    def weighted(self) -> list[tuple[float, float, float]]:
        """(low, high, weight) with the newest observation at weight 1."""
        count = len(self.observed)
        return [(low, high, DECAY ** (count - 1 - n)) for n, (low, high) in enumerate(self.observed)]


class Schedule:
    """Next-look times for running renders; the one object the poller asks."""

    def __init__(self, settings: Settings, store: ObservationStore | None = None, *,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time) -> None:
        self.scale = settings.poll_time_scale
        self.max_render_seconds = settings.max_render_minutes * 60.0
        self.store = store
        self.rng = rng or random.Random()
        self.clock = clock
        self.keys: dict[RenderKey, RenderTimes] = {}
        self.families: dict[str, RenderTimes] = {}  # per provider: render time / prior midpoint
        self._cache: dict[tuple[RenderKey, tuple[float, float]], tuple[tuple[int, int], Distribution]] = {}
        self._version = 0
        self._targets: dict[RenderKey, tuple[tuple[int, int, float], float]] = {}
        self._webhooks: dict[str, float] = {}
        self._webhooks_read_at = -math.inf
        self._webhooks_reading: asyncio.Task[None] | None = None
        self._loaded = False

    # -- learning ---------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read recent observations once (startup); later ones are learned as jobs finish."""
        if self._loaded or self.store is None:
            self._loaded = True
            return
        self._loaded = True
        for key, low, high in await self.store.recent(HISTORY):
            self._learn(RenderKey(*key), low, high, prior=None)
        await self.refresh_webhooks()

    async def observe(self, key: RenderKey, prior: tuple[float, float], low: float, high: float) -> None:
        """A job of `key` finished after (low, high] wall seconds (last look still running, this look done)."""
        low, high = low / self.scale, high / self.scale
        self._learn(key, low, high, prior=prior)
        if self.store is not None:
            await self.store.add(key, low, high, now=self.clock())

    def _learn(self, key: RenderKey, low: float, high: float, *, prior: tuple[float, float] | None) -> None:
        self.keys.setdefault(key, RenderTimes()).add(low, high)
        if prior is not None:  # loaded rows feed the family when their prior is next seen (see below)
            mid = (prior[0] + prior[1]) / 2
            self.families.setdefault(key.provider, RenderTimes()).add(low / mid, high / mid)
        self._version += 1

    def distribution(self, key: RenderKey, prior: tuple[float, float]) -> Distribution:
        """Render times of `key` in model seconds: its own observations, its provider's, the prior."""
        # Rebuilt when this key learned something, or its provider's other models did a few times
        # over: with thousands of renders finishing, a rebuild per key per render anywhere is waste.
        own, family = self.keys.get(key), self.families.get(key.provider)
        version = (own.added if own else 0, (family.added if family else 0) // FAMILY_REFRESH)
        cached = self._cache.get((key, prior))
        if cached is not None and cached[0] == version:
            return cached[1]
        low, high = prior[0], max(prior[1], prior[0] + 1.0)
        own = self.keys.get(key)
        own_parts = own.weighted() if own else []
        own_total = sum(w for _, _, w in own_parts)
        fade = 1.0 / (1.0 + own_total / FADE_AFTER)  # prior and borrowed renders yield to the key's own
        parts: list[tuple[float, float, float]] = [(low, high, PRIOR_WEIGHT * fade)]
        if own is not None and key.provider not in self.families:  # observations loaded from storage
            family = self.families.setdefault(key.provider, RenderTimes())
            mid = (low + high) / 2
            for a, b in own.observed:
                family.add(a / mid, b / mid)
        family = self.families.get(key.provider)
        if family is not None:
            mid = (low + high) / 2
            borrowed = family.weighted()
            total = sum(w for _, _, w in borrowed)
            factor = min(1.0, FAMILY_WEIGHT * fade / total) if total else 0.0
            parts += [(a * mid, b * mid, w * factor) for a, b, w in borrowed]
        dist = self._build(parts, _widen_sparse(own_parts), low, high)
        # The early look, for fast finishes, while nothing rules them out: before any render of the
        # key is seen, or while some were seen DONE by twice its age. Judged on observations, not on
        # the smeared distribution: a render caught by the early look is recorded as done somewhere
        # in (0, early], which would otherwise keep an early look alive that catches nothing.
        early = EARLY_FRACTION * dist.quantile(0.05)
        total = sum(w for _, _, w in own_parts)
        if not own_parts or sum(w for _, b, w in own_parts if b <= 2 * early) >= EARLY_MASS * total:
            dist.early = early
        self._cache[(key, prior)] = (version, dist)
        return dist

    @staticmethod
    def _build(parts: list[tuple[float, float, float]], own_parts: list[tuple[float, float, float]],
               low: float, high: float) -> Distribution:
        parts = [(a * (1 - KERNEL), b * (1 + KERNEL), w) for a, b, w in parts + own_parts]
        body = sum(w for _, _, w in parts)
        # The surprise: a thin floor from SURPRISE_LOW * low to the window's end, then a tail whose
        # survival falls like 1/sqrt(age) (each doubling keeps TAIL_KEEP of it): the hazard is
        # 1/(2 age), so gaps grow like sqrt(age) far out. A hard end would make the hazard spike
        # where it stops, and no tail at all would leave only the cap (half the age) out there.
        surprise = body * SURPRISE / (1 - SURPRISE)
        tail_start = max(high, max((b for _, b, _ in parts), default=high))
        parts.append((SURPRISE_LOW * low, tail_start, surprise / 2))
        left, start = surprise / 2, tail_start
        for _ in range(TAIL_DOUBLINGS):
            share = left * (1 - TAIL_KEEP)
            parts.append((start, 2 * start, share))
            start, left = 2 * start, left - share
        parts.append((start, 2 * start, left))
        return Distribution(parts)

    # -- provider hints ---------------------------------------------------------------------------

    async def webhook_arrived(self, provider: str) -> None:
        """A verified callback from `provider` arrived: its webhooks work, so its jobs need few polls.

        Written to the store too: with BOT_ROLE=gateway the callbacks reach this process, while the
        workers that poll are others. Best effort: a lost write only costs some polls until the next one.
        """
        now = self.clock()
        self._webhooks[provider] = max(now, self._webhooks.get(provider, now))
        if self.store is None:
            return
        try:
            await self.store.webhook_seen(provider, now=now)
        except Exception:
            log.warning("could not record that %s webhooks arrive", provider, exc_info=True)

    async def refresh_webhooks(self) -> None:
        """Read when every provider's last webhook arrived, as recorded by any process."""
        self._webhooks_read_at = self.clock()
        if self.store is None:
            return
        try:
            seen = await self.store.webhooks_seen()
        except Exception:
            log.warning("could not read webhook health", exc_info=True)
            return
        for provider, at in seen.items():
            self._webhooks[provider] = max(at, self._webhooks.get(provider, at))

    def webhooks_work(self, provider: str) -> bool:
        """Whether a verified webhook of `provider` arrived (in any process) within WEBHOOK_TRUST_SECONDS.

        Answered from memory; a read older than WEBHOOK_CACHE_SECONDS starts a refresh in the
        background (the poller asks this for every look and must not wait on the database).
        """
        now = self.clock()
        if self.store is not None and now - self._webhooks_read_at >= WEBHOOK_CACHE_SECONDS:
            self._refresh_in_background()
        seen = self._webhooks.get(provider)
        return seen is not None and now - seen < WEBHOOK_TRUST_SECONDS

    def _refresh_in_background(self) -> None:
        if self._webhooks_reading is not None and not self._webhooks_reading.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a synchronous caller): keep what we know
            return
        self._webhooks_read_at = self.clock()  # one refresh per period, even if it is slow
        self._webhooks_reading = loop.create_task(self.refresh_webhooks(), name="webhook-health")

    # -- placing looks ----------------------------------------------------------------------------

    def give_up_after(self) -> float:
        """Wall seconds after submission at which a render still running is canceled and refunded."""
        return self.max_render_seconds * self.scale

    def first_delay(self, key: RenderKey, prior: tuple[float, float]) -> float:
        """Wall seconds from submission to the first look."""
        return self.next_delay(key, prior, 0.0)

    def next_delay(self, key: RenderKey, prior: tuple[float, float], elapsed: float, *,
                   progress: int | None = None, poll_after: float | None = None) -> float:
        """Wall seconds from now to the next look at a job running for `elapsed` wall seconds."""
        t = elapsed / self.scale
        gap = self.gap(key, prior, t, progress=progress)
        gap *= 1 + self.rng.uniform(-JITTER, JITTER)
        gap = max(gap, MIN_GAP)
        if t + gap > self.max_render_seconds > t:  # look once more right at the cap, not after it
            gap = max(self.max_render_seconds - t, MIN_GAP * 0.01)
        return max(gap * self.scale, poll_after or 0.0)

    def gap(self, key: RenderKey, prior: tuple[float, float], t: float, *, progress: int | None = None) -> float:
        """The gap (model seconds, before jitter) to the next look at age `t` (model seconds)."""
        dist = self.distribution(key, prior)
        median = dist.quantile(0.5)
        cap = min(CAP_FRACTION * max(t, median), MAX_GAP)
        if self.webhooks_work(key.provider):
            return min(max(CAP_FRACTION * max(t, median), WEBHOOK_GAP[0]), WEBHOOK_GAP[1])
        target = self._look_target(key, dist)
        gap = self._base_gap(dist, t, target)
        if progress is not None and PROGRESS_MIN <= progress < 100 and t > 0:
            # The provider's own progress says the render ends near t * 100 / progress, give or take
            # PROGRESS_SPREAD (providers' estimates are rough, and low percentages are noisy): look by
            # the same law within that window, weighted by what we learned. It may lengthen the gap
            # up to the cap, and shorten it to PROGRESS_FLOOR of the distribution's: a progress that
            # sits at 99 % for half an hour must not turn into hammering.
            guided = self._solve(self._within(dist, t, t * 100 / progress), t, target, cap)
            gap = min(max(guided, gap * PROGRESS_FLOOR), cap)
        return max(gap, MIN_GAP)

    @staticmethod
    def _within(dist: Distribution, t: float, estimate: float) -> Distribution:
        """`dist` after age `t`, restricted to estimate * (1 +- PROGRESS_SPREAD), with a thin even floor
        there (the estimate may point where nothing was seen yet)."""
        low = max(t, estimate * (1 - PROGRESS_SPREAD))
        high = max(estimate * (1 + PROGRESS_SPREAD), low + MIN_GAP)
        inner = dist.points[bisect.bisect_right(dist.points, low):bisect.bisect_left(dist.points, high)]
        edges = [low, *inner, high]
        parts = [(a, b, dist.F(b) - dist.F(a)) for a, b in itertools.pairwise(edges) if b > a]
        mass = sum(w for _, _, w in parts)
        parts = [(a, b, w) for a, b, w in parts if w > 0]
        parts.append((low, high, max(mass, 1e-9) * PROGRESS_FLOOR_MASS + (1.0 if mass <= 1e-9 else 0.0)))
        return Distribution(parts)

    def _base_gap(self, dist: Distribution, t: float, target: float) -> float:
        """The gap from the distribution alone: hazard placement, the cap, the early look."""
        cap = min(CAP_FRACTION * max(t, dist.quantile(0.5)), MAX_GAP)
        gap = self._solve(dist, t, target, cap)
        if t < dist.early:
            gap = min(gap, dist.early - t)
        return max(gap, MIN_GAP)

    def plan(self, dist: Distribution, target: float, truth: Distribution | None = None) -> tuple[float, float]:
        """Expected (requests, mean ready->seen delay) of the looks `target` places on `dist`, were
        `truth` (default `dist`) how renders really finish."""
        truth = truth or dist
        polls = delay = 0.0
        t, done, moment = 0.0, 0.0, 0.0
        while done < 1.0 - 1e-4 and t < self.max_render_seconds:
            polls += 1.0 - done
            t += self._base_gap(dist, t, target)
            now_done, now_moment = truth.F(t), truth.M(t)
            delay += t * (now_done - done) - (now_moment - moment)
            done, moment = now_done, now_moment
        return polls, delay

    def _look_target(self, key: RenderKey, dist: Distribution) -> float:
        """c^2 of the gaps c / sqrt(hazard) for `key`, chosen for `dist` (kept while few renders changed it).

        Renders finish all the time at scale, and each one rebuilds the distributions; choosing a
        target costs a few plans, so a key keeps its target until RETARGET_EVERY of its own renders
        (or its provider's) came in.
        """
        if dist.look_target is not None:
            return dist.look_target
        own = self.keys.get(key)
        seen = (own.added if own else 0, self._version, self.clock())
        kept = self._targets.get(key)
        if kept is not None:
            learned = seen[0] - kept[0][0]
            borrowed = seen[1] - kept[0][1]  # while the key has few renders, the provider's teach it
            fresh = learned < RETARGET_EVERY and (seen[0] >= FEEDBACK_MIN or borrowed < RETARGET_EVERY)
            settled = kept[0][0] >= FEEDBACK_MIN  # early on, a target from the prior must not outlive the throttle
            if fresh or (settled and seen[2] - kept[0][2] < RETARGET_SECONDS):
                dist.look_target = kept[1]
                return kept[1]
        own_dist = self._own(key)
        dist.look_target = self.choose_target(dist, self._delay_factor(key, dist, kept[1] if kept else None),
                                              truth=own_dist)
        self._targets[key] = (seen, dist.look_target)
        return dist.look_target

    def _own(self, key: RenderKey) -> Distribution | None:
        """The key's own recent render times alone, once there are enough to judge a plan by.

        Plans are placed on the full distribution (prior, provider, a thin everywhere-surprise: safe
        against renders unlike any seen) but judged by what this key's renders really did: a prior
        that no longer matches, or the surprise tail, must not make requests look dearer than they are.
        """
        own = self.keys.get(key)
        if own is None or len(own.observed) < FEEDBACK_MIN:
            return None
        return Distribution([(a * (1 - KERNEL), b * (1 + KERNEL), w) for a, b, w in own.weighted()])

    def _delay_factor(self, key: RenderKey, dist: Distribution, target: float | None) -> float:
        """How much longer renders of `key` really waited to be seen than the plan says (1 = as planned).

        A render finishes uniformly inside the gap it finished in, so half of each observation's
        last gap is its ready->seen delay, measured without trusting the learned shape. Plans on a
        learned distribution are too optimistic where it is sparse (early on, wide spreads): this
        ratio, over the key's recent renders, corrects them.
        """
        own = self.keys.get(key)
        if own is None or len(own.observed) < FEEDBACK_MIN or target is None:
            return 1.0
        recent = list(own.observed)[-FEEDBACK_RECENT:]
        seen = sum(high - low for low, high in recent) / (2 * len(recent))
        _, planned = self.plan(dist, target, self._own(key))
        return min(max(seen / max(planned, 1e-6), FEEDBACK_RANGE[0]), FEEDBACK_RANGE[1])

    def choose_target(self, dist: Distribution, delay_factor: float = 1.0, *,
                      truth: Distribution | None = None) -> float:
        """The c^2 whose plan uses POLL_SHARE of the reference's requests and DELAY_SHARE of its delay alike.

        The reference polls every REFERENCE_GAP seconds: about E[T] / gap + 1/2 requests and gap / 2
        delay. When both shares can be met they are met with the same room; when no schedule can
        meet both (a wide spread of render times), the miss is shared instead of all on one side,
        but the delay never aims above MAX_DELAY_SHARE of the reference's: users wait, the provider
        only answers. Plans are placed on `dist` and evaluated exactly (early look, cap and all) on
        `truth` (default `dist`), by bisection; their delay is multiplied by `delay_factor` (what the
        key's recent renders really waited, as measured against the plan).
        """
        reference_polls = (truth or dist).mean / REFERENCE_GAP + 0.5
        reference_delay = REFERENCE_GAP / 2
        max_delay = MAX_DELAY_SHARE * reference_delay

        def balance(c2: float) -> tuple[float, float]:
            polls, delay = self.plan(dist, c2, truth)
            delay *= delay_factor
            return polls / (POLL_SHARE * reference_polls) - delay / (DELAY_SHARE * reference_delay), delay

        lo, hi = math.log(0.05), math.log(400.0)  # c^2 in s^2: from c ~ 0.2 to 20
        for _ in range(14):
            mid = (lo + hi) / 2
            excess, delay = balance(math.exp(mid))
            if excess > 0 and delay < max_delay:  # too many requests and room in the delay: wider gaps
                lo = mid
            else:
                hi = mid
        return math.exp((lo + hi) / 2)

    @staticmethod
    def _solve(dist: Distribution, t: float, target: float, cap: float) -> float:
        """Smallest g in [MIN_GAP, cap] with g * P(done by t + g | running at t) >= target."""
        alive = 1.0 - dist.F(t)
        if alive <= 1e-9 or cap <= MIN_GAP:
            return max(cap, MIN_GAP)
        base = dist.F(t)

        def covered(g: float) -> float:
            return g * (dist.F(t + g) - base) / alive

        if covered(cap) < target:
            return cap
        lo, hi = MIN_GAP, cap
        if covered(lo) >= target:
            return lo
        for _ in range(30):
            mid = (lo + hi) / 2
            if covered(mid) >= target:
                hi = mid
            else:
                lo = mid
            if hi - lo < 0.05:
                break
        return hi


def render_key(provider: str, model: str, duration: float, resolution: str) -> RenderKey:
    return RenderKey(provider, model, float(duration), resolution)




def _widen_sparse(observed: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Spread each observation over at least half the distance to its NEIGHBOURS-th nearest one.

    Why: gaps follow 1/sqrt(hazard), so a hole between a few scattered observations (a sparse
    tail, a wide spread early on) becomes a long gap exactly where renders do finish. Where
    observations are dense the neighbours are close and nothing changes; where they are sparse,
    the estimate is smooth (a k-nearest-neighbour bandwidth).
    """
    if len(observed) <= NEIGHBOURS:
        return observed
    mids = sorted((a + b) / 2 for a, b, _ in observed)
    out = []
    for low, high, weight in observed:
        mid = (low + high) / 2
        at = bisect.bisect_left(mids, mid)
        near = sorted(abs(m - mid) for m in mids[max(0, at - NEIGHBOURS - 1):at + NEIGHBOURS + 2])
        reach = near[min(NEIGHBOURS, len(near) - 1)] / 2
        out.append((min(low, mid - reach), max(high, mid + reach), weight))
    return out
