"""Prometheus metrics of one bot process, in a registry of its own.

Each process (and each bot a test runs side by side) owns a `Metrics` with its own
`CollectorRegistry`, never prometheus_client's global one. Code elsewhere calls the few methods
below; the provider HTTP helper, which has no handle on the bot, finds the process's metrics through
the `current` context variable set in `VideoBot.setup_hook` (tasks started afterwards inherit it).

Two families are read from the database at scrape time rather than counted in memory, because the
database is their truth and every process sees the same value: `videobot_jobs_in_flight` and
`videobot_credits_total` (the ledger is append-only, so its sums only grow). With several processes,
aggregate those two with `max`, the others with `sum`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from storage import Job, JobState

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTCOMES = {JobState.DELIVERED: "delivered", JobState.UNDELIVERED: "undelivered", JobState.FAILED: "failed",
            JobState.CANCELED: "canceled"}
CREDIT_KINDS = ("spent", "refunded", "granted", "removed")

current: ContextVar[Metrics | None] = ContextVar("videobot_metrics", default=None)


class _StoreFamilies(Collector):
    """Families whose values `Metrics.refresh` reads from the database just before each scrape."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.credits: dict[str, int] = {}

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        gauge = GaugeMetricFamily("videobot_jobs_in_flight", "Jobs accepted but not yet rendered, by model "
                                  "(database-wide).", labels=["model"])
        for model, count in sorted(self.in_flight.items()):
            gauge.add_metric([model], count)
        yield gauge
        counter = CounterMetricFamily("videobot_credits", "Credits moved by the ledger, by kind: spent (reserved "
                                      "for jobs), refunded, granted (welcome, daily, admin), removed (admin "
                                      "corrections); database-wide.", labels=["kind"])
        for kind in CREDIT_KINDS:
            counter.add_metric([kind], self.credits.get(kind, 0))
        yield counter


class Metrics:
    """All metric families of one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.jobs = Counter("videobot_jobs", "Jobs by outcome: accepted when stored, then delivered, undelivered, "
                            "failed or canceled.", ["model", "provider", "outcome"], registry=registry)
        self.provider_requests = Counter("videobot_provider_requests", "HTTP requests to video providers by outcome "
                                         "(2xx, 3xx, 4xx, 429, 5xx, error).", ["provider", "outcome"],
                                         registry=registry)
        self.provider_seconds = Histogram("videobot_provider_request_seconds", "Provider HTTP request duration "
                                          "(until the response headers).", ["provider"], registry=registry,
                                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.ack_seconds = Histogram("videobot_ack_seconds", "From receiving an interaction to Discord accepting "
                                     "its acknowledgement (the limit is 3 s).", registry=registry,
                                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5))
        self.delivery_seconds = Histogram("videobot_delivery_seconds", "From our copy of the video being ready "
                                          "(downloaded) to it being posted to Discord.", registry=registry,
                                          buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900))
        self.loop_lag = Gauge("videobot_event_loop_lag_seconds", "How late the event loop ran a timer at the last "
                              "check (twice a second); high values mean something blocks the loop.",
                              registry=registry)
        self.loop_lag_max = Gauge("videobot_event_loop_lag_max_seconds", "The largest event loop lag since the "
                                  "previous scrape.", registry=registry)
        self._store = _StoreFamilies()
        registry.register(self._store)
        self._ready_at: dict[int, float] = {}
        self._received: dict[int, float] = {}
        self._lag_max = 0.0
        self._lag = 0.0

    # -- jobs ---------------------------------------------------------------------------------

    def job_changed(self, before: Job | None, after: Job) -> None:
        """Called by the job store after each committed change (`before` None: just created)."""
        if before is None:
            self.jobs.labels(after.model, after.provider, "accepted").inc()
            return
        if before.state is after.state:
            return
        if after.state is JobState.DOWNLOADED:
            self._ready_at[after.id] = after.updated_at
            while len(self._ready_at) > 10_000:  # jobs another process delivers would pile up otherwise
                self._ready_at.pop(next(iter(self._ready_at)))
        outcome = OUTCOMES.get(after.state)
        if outcome is None:
            return
        self.jobs.labels(after.model, after.provider, outcome).inc()
        if after.state is JobState.DELIVERED:
            ready = self._ready_at.pop(after.id, None)
            if ready is not None:
                self.delivery_seconds.observe(max(0.0, after.updated_at - ready))

    # -- provider HTTP ------------------------------------------------------------------------

    def provider_request(self, provider: str, outcome: str, seconds: float) -> None:
        self.provider_requests.labels(provider, outcome).inc()
        self.provider_seconds.labels(provider).observe(seconds)

    # -- interactions -------------------------------------------------------------------------

    def interaction_received(self, interaction_id: int) -> None:
        now = time.monotonic()
        self._received[interaction_id] = now
        if len(self._received) > 5000:  # interactions never acknowledged (they expire after 15 minutes)
            for key, when in list(self._received.items()):
                if now - when > 900:
                    del self._received[key]

    def interaction_acknowledged(self, interaction_id: int) -> None:
        received = self._received.pop(interaction_id, None)
        if received is not None:
            self.ack_seconds.observe(time.monotonic() - received)

    # -- event loop ---------------------------------------------------------------------------

    def loop_lagged(self, seconds: float) -> None:
        self.loop_lag.set(seconds)
        self._lag = seconds
        self._lag_max = max(self._lag_max, seconds)

    # -- scrape -------------------------------------------------------------------------------

    async def refresh(self, store: object) -> None:
        """Read the database-wide families (`store` is a `storage.Store`)."""
        in_flight = await store.jobs.in_flight_by_model()  # type: ignore[attr-defined]
        credits = await store.ledger.totals_by_kind()  # type: ignore[attr-defined]
        self._store.in_flight = in_flight
        self._store.credits = {
            "spent": -credits.get("reserve", 0),
            "refunded": credits.get("refund", 0),
            "granted": credits.get("grant", 0) + credits.get("daily", 0) + credits.get("adjust_up", 0),
            "removed": -credits.get("adjust_down", 0),
        }

    def render(self) -> bytes:
        self.loop_lag_max.set(self._lag_max)
        self._lag_max = self._lag
        return generate_latest(self.registry)


class LoopMonitor:
    """Measures how late the event loop wakes a sleeping task: the lag every other task also suffers.

    `last_beat` (monotonic) is when the monitor last ran; the health check treats a stale beat or a
    large lag as a stuck loop.
    """

    def __init__(self, metrics: Metrics, interval: float = 0.5) -> None:
        self.metrics = metrics
        self.interval = interval
        self.last_beat = time.monotonic()
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def stalled_for(self) -> float:
        """The worst of: the last measured lag, and how overdue the next beat is right now."""
        overdue = time.monotonic() - self.last_beat - self.interval
        return max(self.lag, overdue, 0.0)

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self.last_beat = time.monotonic()
            self.lag = max(0.0, self.last_beat - before - self.interval)
            self.metrics.loop_lagged(self.lag)
            if self.lag > 1.0:
                log.warning("event loop lag %.2f s: something blocked the loop", self.lag)
