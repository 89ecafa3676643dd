"""Shared pieces: a loopback Discord plus the real bot in its own process, and small stats helpers."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bot.sandbox.discord_server import LoopbackDiscord

ROOT = Path(__file__).parents[1]


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


class BotProcess:
    """`python -m bot` against a loopback Discord, with its own data directory."""

    def __init__(self, server: LoopbackDiscord, data: Path | None = None, **env: str) -> None:
        self.server = server
        self.data = data or Path(tempfile.mkdtemp(prefix="bench-"))
        self.env = env
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> float:
        """Start and return seconds until the bot had synced its commands."""
        env = {k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME", "LANG"))}
        env.update({
            "DISCORD_TOKEN": "bench", "DISCORD_API_BASE": self.server.api_base,
            "DISCORD_GATEWAY_URL": self.server.gateway_url, "DATABASE_PATH": str(self.data / "bot.sqlite3"),
            "VIDEO_DIR": str(self.data / "videos"), "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING",
            "SIMULATED_SPEED": "1", "MAX_CONCURRENT_JOBS": "100000", "START_BALANCE": "100000000",
        })
        env.update(self.env)
        self.server.identified.clear()
        for key in list(self.server.commands):
            self.server.commands[key] = []
        started = asyncio.get_running_loop().time()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=str(ROOT), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(60):
            await self.server.identified.wait()
            while not self.server.registered_commands():
                await asyncio.sleep(0.01)
        return asyncio.get_running_loop().time() - started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
