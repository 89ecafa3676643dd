"""10,000 jobs in flight, really polled: the real bot process against a Replicate look-alike.

The bot (`python -m bot`, KLING_PROVIDER/SORA_PROVIDER=replicate) starts with 10,000 running jobs
in its SQLite, each at a random point of a render whose length is drawn from the finish-time
models of bench/polling.py (a mix of all six), in real time (POLL_TIME_SCALE=1). The fake answers
status requests (`processing` until the render's time, then `succeeded` with a small file), so the
bot polls, downloads and posts for real. It also lists the account's predictions (`GET /v1/predictions`:
newest first, 100 a page, a `next` cursor) so a bot that sweeps instead of polling each render is
measured the same way. We report status requests per second, the bot's CPU
(% of one core), RSS, open sockets, the ack latency of /ping probes (10/s: the event loop's lag
as a user feels it), and the ack p99 of 200 /kling at 200/s under that load versus the same
burst with no jobs in flight.

Targets (issue 15): ack p99 under load <= 1.5x idle, CPU <= 50 % of one core, connections
bounded by settings. `python -m bench.inflight` (about 2 minutes).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.ack_latency import fire
from bench.common import LoopbackService, bench_bot, mean, percentile, rss_kib, table
from bench.fixtures import insert_running
from bench.polling import MIX, MODELS
from bot.requests import parse_request
from bot.sandbox.discord import LoopbackDiscord
from storage import CreditPolicy, Store

IN_FLIGHT = 10_000
WARMUP = 15.0  # seconds after start before measuring
WINDOW = 40.0  # seconds of measurement
BURSTS = 3  # the 200-command burst is repeated (after the window); its p99 is over all of them
LIST_PAGE = 100  # Replicate's page size (PROVIDERS.md)


class ReplicateLike(LoopbackService):
    """Predictions that finish at a planned wall time; counts status and list requests per second."""

    def __init__(self) -> None:
        super().__init__()
        self.ready: dict[str, float] = {}
        self.order: list[tuple[float, str]] = []  # (created, id), oldest first: the list reads it from the end
        self.status_times: list[float] = []
        self.list_times: list[float] = []
        self.rng = random.Random(5)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/models/{owner}/{name}/predictions", self.create),
                web.get("/v1/predictions", self.list), web.get("/v1/predictions/{id}", self.get),
                web.post("/v1/predictions/{id}/cancel", self.cancel), web.get("/files/{id}.mp4", self.file)]

    def add(self, pid: str, created: float, ready: float) -> None:
        """A prediction created at `created` that succeeds at `ready` (wall times)."""
        self.ready[pid] = ready
        bisect.insort(self.order, (created, pid))

    def state(self, pid: str) -> str:
        """What the prediction's own endpoint reports now; the list says the same."""
        return "processing" if time.time() < self.ready.get(pid, 0.0) else "succeeded"

    async def create(self, request: web.Request) -> web.Response:
        pid = f"new{len(self.ready)}"
        now = time.time()
        self.add(pid, now, now + self.rng.uniform(120, 180))
        return web.json_response({"id": pid, "status": "starting", "created_at": iso(now)}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        """Newest first, 100 a page; the cursor names the last item read (stable while new ones arrive)."""
        self.list_times.append(time.monotonic())
        end = len(self.order)
        if cursor := request.query.get("cursor"):
            created, _, pid = cursor.partition("_")
            end = bisect.bisect_left(self.order, (float(created), pid))
        start = max(0, end - LIST_PAGE)
        page = self.order[start:end][::-1]
        next_url = None
        if start > 0:
            created, pid = page[-1]
            next_url = f"http://127.0.0.1:{self.port}/v1/predictions?cursor={created!r}_{pid}"
        return web.json_response({"next": next_url, "previous": None, "results": [
            {"id": pid, "status": self.state(pid), "created_at": iso(created)} for created, pid in page]})

    async def get(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        self.status_times.append(time.monotonic())
        if self.state(pid) == "processing":
            return web.json_response({"id": pid, "status": "processing", "logs": ""})
        return web.json_response({"id": pid, "status": "succeeded",
                                  "output": f"http://127.0.0.1:{self.port}/files/{pid}.mp4"})

    async def cancel(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "status": "canceled"})

    async def file(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096, content_type="video/mp4")


def iso(when: float) -> str:
    """Replicate's created_at: ISO 8601 in UTC with microseconds and a Z."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def jobs_in_flight(fake: ReplicateLike, server: LoopbackDiscord) -> list[dict[str, Any]]:
    """10,000 running jobs, each at a random point of a render drawn from the finish-time models."""
    rng = random.Random(11)
    now = time.time()
    draws = list(MODELS.values())
    rows = []
    for n in range(IN_FLIGHT):
        model, options = MIX[n % len(MIX)]
        request = parse_request(model, prompt=f"in flight {n}", **options)
        low, high = request.typical_wait()
        length = draws[n % len(draws)](low, high, rng)
        age = rng.uniform(0, length)
        pid = f"p{n}"
        fake.add(pid, now - age, now - age + length)
        rows.append({"user_id": 10_000_000 + n, "guild_id": server.guild, "channel_id": server.general,
                     "model": model, "provider": "replicate", "request_json": request.model_dump_json(),
                     "provider_job_id": pid, "submitted_at": now - age, "next_run_at": now + rng.uniform(0, 20)})
    return rows


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


async def probe(server: LoopbackDiscord, users: list[int], seconds: float) -> list[float]:
    """/ping every 100 ms for `seconds`: ack latencies (ms)."""
    latencies: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        latencies += [v * 1000 for v in await fire(server, users, "/ping", 1, None)]
        await asyncio.sleep(0.1)
    return latencies


async def measure(loaded: bool) -> dict[str, Any]:
    fake = ReplicateLike()
    await fake.start()
    server = LoopbackDiscord()
    await server.start()
    users = [server.add_user(f"u{n}") for n in range(50)]
    server.guilds[server.guild].members.update(users)
    data = Path(tempfile.mkdtemp(prefix="bench-inflight-"))
    if loaded:
        store = await Store.open(data / "bot.sqlite3", CreditPolicy())
        await insert_running(store, jobs_in_flight(fake, server))
        await store.close()
    bot = bench_bot(server, data, KLING_PROVIDER="replicate", SORA_PROVIDER="replicate",
                    REPLICATE_API_TOKEN="r8_bench", REPLICATE_API_BASE=f"http://127.0.0.1:{fake.port}",
                    POLL_TIME_SCALE="1")
    await bot.start()
    result: dict[str, Any] = {}
    try:
        await fire(server, users, "/ping", 10, None)  # warm up (first-use costs are not what we measure)
        await fire(server, users, "/kling", 20, 50.0)
        await asyncio.sleep(WARMUP if loaded else 2.0)
        cpu0, t0, polls0, lists0 = cpu_seconds(bot.pid), time.monotonic(), len(fake.status_times), len(fake.list_times)
        socket_counts: list[int] = []

        async def sample() -> None:
            while True:
                socket_counts.append(sockets(bot.pid))
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample())
        pings = await probe(server, users, WINDOW if loaded else 10.0)
        elapsed = time.monotonic() - t0
        result["cpu"] = (cpu_seconds(bot.pid) - cpu0) / elapsed
        result["status_rps"] = (len(fake.status_times) - polls0) / elapsed
        result["list_rps"] = (len(fake.list_times) - lists0) / elapsed
        burst: list[float] = []
        for _ in range(BURSTS):
            burst += [v * 1000 for v in await fire(server, users, "/kling", 200, 200.0)]
            await asyncio.sleep(2.0)
        sampler.cancel()
        result.update(pings=pings, burst=burst, rss=rss_kib(bot.pid) / 1024, sockets=max(socket_counts or [0]))
    finally:
        await bot.stop()
        await server.stop()
        await fake.stop()
    return result


async def main() -> None:
    idle = await measure(loaded=False)
    load = await measure(loaded=True)
    idle_p99, load_p99 = percentile(idle["burst"], 99), percentile(load["burst"], 99)
    rows = [
        ["status requests / s", "0", f"{load['status_rps']:.0f}", "-"],
        ["list requests / s (sweeps)", f"{idle['list_rps']:.1f}", f"{load['list_rps']:.1f}", "-"],
        ["bot CPU (% of one core)", f"{idle['cpu']:.1%}", f"{load['cpu']:.1%}", "<= 50 %"],
        ["/ping probe ack p50 / p99 (ms): loop lag", f"{percentile(idle['pings'], 50):.1f} / "
         f"{percentile(idle['pings'], 99):.1f}", f"{percentile(load['pings'], 50):.1f} / "
         f"{percentile(load['pings'], 99):.1f}", "-"],
        [f"{BURSTS} x 200 /kling at 200/s: ack p50 (ms)", f"{percentile(idle['burst'], 50):.1f}",
         f"{percentile(load['burst'], 50):.1f}", "-"],
        [f"{BURSTS} x 200 /kling at 200/s: ack p99 (ms)", f"{idle_p99:.1f}", f"{load_p99:.1f}",
         f"{load_p99 / idle_p99:.2f}x (<= 1.5x)"],
        ["open sockets (max)", str(idle["sockets"]), str(load["sockets"]), "bounded"],
        ["RSS (MiB)", f"{idle['rss']:.0f}", f"{load['rss']:.0f}", "-"],
    ]
    table(f"Real bot process, {IN_FLIGHT:,} jobs in flight polled against a Replicate look-alike "
          f"({WINDOW:.0f} s window), vs no jobs", ["measure", "idle", "10,000 in flight", "target"], rows)
    print(f"  mean /ping under load {mean(load['pings']):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
