"""Drive the real bot (discord.py, unmodified) through the loopback Discord."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.client import VideoBot
from bot.config import Settings
from bot.sandbox.discord_server import Interaction, LoopbackDiscord, point_discord_py_at


class FakeClock:
    """Discord's clock in tests: real time plus an offset a test can push forward."""

    def __init__(self) -> None:
        import time

        self._time = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def e2e_settings(tmp_path: Path, server: LoopbackDiscord, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": "loopback-token",
        "discord_api_base": server.api_base,
        "discord_gateway_url": server.gateway_url,
        "database_path": tmp_path / "data" / "bot.sqlite3",
        "video_dir": tmp_path / "data" / "videos",
        "simulated_speed": 0.002,
        "simulated_fps": 2,
        "reference_image_hosts": "127.0.0.1",
        "reference_image_allow_private": True,
        "secret_key": "e2e-secret",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class BotHarness:
    """A loopback Discord with the real bot logged in to it."""

    server: LoopbackDiscord
    settings: Settings
    bot: VideoBot | None = None
    task: asyncio.Task[None] | None = None
    clock: Callable[[], float] | None = None
    serve_web: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    async def start(self) -> VideoBot:
        point_discord_py_at(self.settings.discord_api_base, self.settings.discord_gateway_url)
        bot = VideoBot(self.settings, serve_web=self.serve_web, **({"clock": self.clock} if self.clock else {}))
        await bot.login("loopback-token")
        self.task = asyncio.create_task(bot.connect(reconnect=True))
        async with asyncio.timeout(20):
            await bot.wait_until_ready()
        self.bot = bot
        return bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        self.bot = None

    async def restart(self) -> VideoBot:
        await self.stop()
        return await self.start()

    async def invoke(self, command: str, *, user: int, channel: int,
                     attachments: dict[str, tuple[str, bytes, str]] | None = None,
                     context: str | None = None, options: dict[str, Any] | None = None,
                     **more: Any) -> Interaction:
        """Run a slash command and wait until the bot has answered it (`options` for names like `user`)."""
        interaction = await self.server.invoke(command, user=user, channel=channel, options={**(options or {}), **more},
                                               attachments=attachments, context=context)
        await interaction.wait_response(within=10)
        return interaction

    async def click(self, message: dict[str, Any], button: str, *, user: int) -> Interaction:
        interaction = await self.server.click(message, button, user=user)
        await interaction.wait_response(within=10)
        return interaction

    async def wait_for_message(self, channel: int | None, predicate: Callable[[dict[str, Any]], bool],
                               timeout: float = 30.0) -> dict[str, Any]:
        return await self.server.wait_for_message(channel, predicate, within=timeout)

    async def wait_job(self, job_id: int, *states: Any, timeout: float = 30.0) -> Any:
        """Poll the bot's store until the job reaches one of `states`."""
        assert self.bot is not None
        async with asyncio.timeout(timeout):
            while True:
                job = await self.bot.store.jobs.get(job_id)
                if job is not None and job.state in states:
                    return job
                await asyncio.sleep(0.02)

    async def job_settled(self, job_id: int, timeout: float = 30.0) -> Any:
        """Wait until a job no longer occupies a render slot (delivered, failed or canceled)."""
        from storage import JobState

        return await self.wait_job(job_id, JobState.DELIVERED, JobState.FAILED, JobState.CANCELED,
                                   JobState.UNDELIVERED, timeout=timeout)

    def response_message(self, interaction: Interaction) -> dict[str, Any]:
        assert interaction.original_message_id is not None
        for message in self.server.all_messages():
            if message["id"] == str(interaction.original_message_id):
                return message
        raise KeyError(interaction.original_message_id)

    def ephemeral_text(self, interaction: Interaction) -> str:
        """The text of an ephemeral answer (content plus embed descriptions)."""
        message = self.response_message(interaction)
        assert message["flags"] & 64, "expected an ephemeral answer"
        parts = [message["content"]] + [embed.get("description") or "" for embed in message["embeds"]]
        return "\n".join(part for part in parts if part)
