"""Drive the real bot (discord.py, unmodified) through the loopback Discord."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import discord

from bot.client import VideoBot
from bot.config import Settings
from bot.discord_api import point_discord_py_at
from bot.sandbox.discord import Interaction, LoopbackDiscord


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


class FrozenClock:
    """Discord's clock standing still until a test moves it: the 3 s and 15 min rules never fire by accident
    on a slow machine, only when a test advances past them."""

    def __init__(self, start: float | None = None) -> None:
        import time

        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
        "secret_key": "e2e-secret-" + "x" * 32,
        "web_port": 0,  # metrics and health on a free port: bots run side by side
    }
    values.update(overrides)
    return Settings(**values)


def mp4_box_order(data: bytes) -> list[str]:
    """The top-level box types of an MP4 held in memory, in file order (ISO/IEC 14496-12 §4.2)."""
    kinds, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = len(data) - offset
        assert size >= 8, f"corrupt MP4 box at {offset}"
        kinds.append(kind.decode("latin-1"))
        offset += size
    return kinds


def assert_videos_fast_start(server: LoopbackDiscord) -> None:
    """Every MP4 the loopback Discord received has `moov` before `mdat`, so clients can play it at once."""
    for attachment_id, (data, content_type, name) in server.files.items():
        if not (name.lower().endswith(".mp4") or content_type == "video/mp4"):
            continue
        kinds = mp4_box_order(data)
        assert "moov" in kinds and "mdat" in kinds, f"{name} ({attachment_id}) is not a complete MP4: {kinds}"
        assert kinds.index("moov") < kinds.index("mdat"), f"{name} ({attachment_id}) is not fast-start: {kinds}"


ClientT = TypeVar("ClientT", bound=discord.Client)


async def start_client(client: discord.Client, server: LoopbackDiscord, token: str = "loopback-token", *,
                       ready_timeout: float = 20.0) -> asyncio.Task[None]:
    """Point discord.py at `server`, log in, connect in a task and return it once the client is ready.

    If `connect` dies first (a parser KeyError, a refused login), its error is raised here instead of a timeout.
    """
    point_discord_py_at(server.api_base, server.gateway_url)
    await client.login(token)
    task = asyncio.create_task(client.connect(reconnect=True))
    ready = asyncio.create_task(client.wait_until_ready())
    try:
        async with asyncio.timeout(ready_timeout):
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if task.done():
        task.result()  # raises what stopped the client
        raise RuntimeError("the client disconnected before it was ready")
    return task


async def stop_client(client: discord.Client, task: asyncio.Task[None] | None) -> None:
    """Close the client (normal close: the loopback gateway ends its session) and reap its task."""
    await client.close()
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@contextlib.asynccontextmanager
async def running_client(client: ClientT, server: LoopbackDiscord, token: str = "loopback-token", *,
                         ready_timeout: float = 20.0) -> AsyncIterator[ClientT]:
    """Any discord.py client (a test bot, the real bot) logged in to the loopback Discord for the block."""
    task = await start_client(client, server, token, ready_timeout=ready_timeout)
    try:
        yield client
    finally:
        await stop_client(client, task)


@dataclass
class LoopbackDriver:
    """Acts as Discord's users against the loopback server: run commands, click, submit modals, read messages."""

    server: LoopbackDiscord

    async def invoke(self, command: str, *, user: int | None = None, channel: int | None = None,
                     attachments: dict[str, tuple[str, bytes, str]] | None = None,
                     context: str | None = None, options: dict[str, Any] | None = None,
                     respond_within: float | None = 10.0, **more: Any) -> Interaction:
        """Run a slash command ("/credits grant" for subcommands) and, unless `respond_within` is None, wait
        until the bot has answered it. Options go as keywords, or in `options` for names like `user`."""
        interaction = await self.server.invoke(
            command, user=self.server.alice if user is None else user,
            channel=self.server.general if channel is None else channel,
            options={**(options or {}), **more}, attachments=attachments, context=context)
        if respond_within is not None:
            await interaction.wait_response(within=respond_within)
        return interaction

    async def click(self, message: dict[str, Any], button: str, *, user: int | None = None,
                    values: list[str] | None = None, respond_within: float | None = 10.0) -> Interaction:
        """Press a button (custom_id or label) or choose select `values`, and wait for the bot's answer."""
        interaction = await self.server.click(message, button, user=self.server.alice if user is None else user,
                                              values=values)
        if respond_within is not None:
            await interaction.wait_response(within=respond_within)
        return interaction

    async def submit_modal(self, custom_id: str, values: dict[str, Any], *, user: int | None = None,
                           channel: int | None = None, respond_within: float | None = 10.0) -> Interaction:
        """Fill in and submit a modal the bot showed, and wait for the bot's answer."""
        interaction = await self.server.submit_modal(
            custom_id, values, user=self.server.alice if user is None else user,
            channel=self.server.general if channel is None else channel)
        if respond_within is not None:
            await interaction.wait_response(within=respond_within)
        return interaction

    async def wait_for_message(self, channel: int | None, predicate: Callable[[dict[str, Any]], bool],
                               timeout: float = 30.0) -> dict[str, Any]:
        return await self.server.wait_for_message(channel, predicate, within=timeout)

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


@dataclass
class BotHarness(LoopbackDriver):
    """A loopback Discord with the real bot logged in to it."""

    settings: Settings
    bot: VideoBot | None = None
    task: asyncio.Task[None] | None = None
    clock: Callable[[], float] | None = None
    serve_web: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    async def start(self) -> VideoBot:
        point_discord_py_at(self.settings.discord_api_base, self.settings.discord_gateway_url)
        bot = VideoBot(self.settings, serve_web=self.serve_web, **({"clock": self.clock} if self.clock else {}))
        self.task = await start_client(bot, self.server, "loopback-token")
        self.bot = bot
        return bot

    async def stop(self) -> None:
        if self.bot is not None:
            await stop_client(self.bot, self.task)
        self.bot = None

    async def restart(self) -> VideoBot:
        await self.stop()
        return await self.start()

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
