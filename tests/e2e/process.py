"""`python -m bot` as a separate process against a loopback Discord (crash tests, scale-out, benchmarks)."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from bot.sandbox.discord import LoopbackDiscord

ROOT = Path(__file__).parents[2]


class BotProcess:
    """One bot process with its own data directory and environment (strings, as os.environ)."""

    def __init__(self, server: LoopbackDiscord, data: Path | None = None, *, name: str = "bot", **env: str) -> None:
        self.server = server
        self.data = data or Path(tempfile.mkdtemp(prefix="botproc-"))
        self.name = name
        self.env = env
        self.process: asyncio.subprocess.Process | None = None

    @property
    def log(self) -> Path:
        return self.data / f"{self.name}.log"

    async def spawn(self, **extra: str) -> None:
        env = {key: value for key, value in os.environ.items() if key.startswith(("PATH", "HOME", "LANG"))}
        env.update({
            "DISCORD_TOKEN": "loopback-process", "DISCORD_API_BASE": self.server.api_base,
            "DISCORD_GATEWAY_URL": self.server.gateway_url, "DATABASE_PATH": str(self.data / "bot.sqlite3"),
            "VIDEO_DIR": str(self.data / "videos"), "SECRET_KEY": "loopback-secret-" + "x" * 32, "LOG_LEVEL": "WARNING",
            "WEB_PORT": "0",  # processes run side by side: each serves metrics on a free port
        })
        env.update(self.env)
        env.update(extra)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=str(ROOT), env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log)

    async def start(self, **extra: str) -> float:
        """Spawn and wait until the bot is connected and has synced its commands; returns the seconds taken."""
        self.server.identified.clear()
        for key in list(self.server.commands):
            self.server.commands[key] = []
        started = asyncio.get_running_loop().time()
        await self.spawn(**extra)
        async with asyncio.timeout(60):
            await self.server.identified.wait()
            while not self.server.registered_commands():
                await asyncio.sleep(0.01)
        return asyncio.get_running_loop().time() - started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def wait_exit(self, within: float = 30.0) -> int:
        assert self.process is not None
        async with asyncio.timeout(within):
            return await self.process.wait()

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            async with asyncio.timeout(15):
                await self.process.wait()
