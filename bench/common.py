"""Shared pieces: a loopback Discord plus the real bot in its own process, and small stats helpers."""

from __future__ import annotations

import statistics
from pathlib import Path

from aiohttp import web

from bot.sandbox.discord import LoopbackDiscord
from tests.e2e.process import BotProcess


class LoopbackService:
    """A fake provider's HTTP side on 127.0.0.1 (a free port): subclasses list their routes."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(self.routes())
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("-" * width for width in widths))


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def bench_bot(server: LoopbackDiscord, data: Path | None = None, **env: str) -> BotProcess:
    """The real bot in its own process, with effectively unlimited credits and slots for load."""
    defaults = {"SIMULATED_SPEED": "1", "MAX_CONCURRENT_JOBS": "100000", "START_BALANCE": "100000000"}
    return BotProcess(server, data, **{**defaults, **env})


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
