"""The loopback Discord enforces Discord's rules, as seen by an unmodified discord.py client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import discord
import jsonschema
import pytest
from discord import app_commands

from bot.discord_api import point_discord_py_at
from bot.sandbox.discord import LoopbackDiscord
from tests.discord_spec import load_spec
from tests.e2e.harness import FakeClock

SPEC = load_spec()


class TinyBot(discord.Client):
    """A minimal client whose commands expose each rule to the test."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.none(), guild_ready_timeout=0.5)
        self.tree = app_commands.CommandTree(self)
        self.gate = asyncio.Event()
        self.outcome: asyncio.Future[Any] | None = None
        tree = self.tree

        @tree.command(name="late")
        async def late(interaction: discord.Interaction) -> None:
            await self.gate.wait()  # the test moves Discord's clock past 3 s first
            await self._record(interaction.response.send_message("too late"))

        @tree.command(name="twice")
        async def twice(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("one")
            await self._record(interaction.response.send_message("two"))

        @tree.command(name="say")
        async def say(interaction: discord.Interaction, text: str, where: str = "reply") -> None:
            if where == "channel":
                await interaction.response.defer()
                await self._record(interaction.channel.send(text))  # type: ignore[union-attr]
            elif where == "dm":
                await interaction.response.defer()
                await self._record(interaction.user.send(text))
            else:
                await self._record(interaction.response.send_message(text))

        @tree.command(name="upload")
        async def upload(interaction: discord.Interaction, size: int) -> None:
            await interaction.response.defer()
            file = discord.File(__import__("io").BytesIO(b"x" * size), filename="big.bin")
            await self._record(interaction.followup.send(file=file, wait=True))

    async def _record(self, action: Any) -> None:
        try:
            result = await action
        except Exception as error:  # the test inspects what discord.py raised
            result = error
        if self.outcome is not None and not self.outcome.done():
            self.outcome.set_result(result)

    def expect(self) -> asyncio.Future[Any]:
        self.outcome = asyncio.get_running_loop().create_future()
        return self.outcome

    async def setup_hook(self) -> None:
        await self.tree.sync()


@pytest.fixture
async def world() -> AsyncIterator[tuple[LoopbackDiscord, TinyBot, FakeClock]]:
    clock = FakeClock()
    server = LoopbackDiscord(clock=clock)
    await server.start()
    point_discord_py_at(server.api_base, server.gateway_url)
    client = TinyBot()
    await client.login("tiny")
    task = asyncio.create_task(client.connect())
    async with asyncio.timeout(10):
        await client.wait_until_ready()
    try:
        yield server, client, clock
    finally:
        await client.close()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await server.stop()


async def run(server: LoopbackDiscord, client: TinyBot, command: str, **kwargs: Any) -> Any:
    outcome = client.expect()
    await server.invoke(command, user=kwargs.pop("user", server.alice), channel=kwargs.pop("channel", server.general),
                        options=kwargs)
    async with asyncio.timeout(10):
        return await outcome


async def test_login_sync_and_recorded_commands(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    names = {c["name"] for c in server.registered_commands()}
    assert names == {"late", "twice", "say", "upload"}
    say = next(c for c in server.registered_commands() if c["name"] == "say")
    assert [(o["name"], o["type"], o.get("required", False)) for o in say["options"]] == \
        [("text", 3, True), ("where", 3, False)]
    assert client.user is not None and client.user.id == server.app_id


async def test_ack_after_three_seconds_is_unknown_interaction(world) -> None:  # type: ignore[no-untyped-def]
    server, client, clock = world
    outcome = client.expect()
    interaction = await server.invoke("/late", user=server.alice, channel=server.general)
    clock.advance(3.5)
    client.gate.set()
    error = await asyncio.wait_for(outcome, 10)
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert interaction.error == "late"


async def test_second_ack_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    error = await run(server, client, "/twice")
    assert isinstance(error, discord.InteractionResponded | discord.HTTPException)


async def test_content_limit(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    error = await run(server, client, "/say", text="x" * 2001)
    assert isinstance(error, discord.HTTPException) and error.code == 50035
    ok = await run(server, client, "/say", text="x" * 2000)
    assert ok is not None and not isinstance(ok, Exception)


async def test_upload_limit_is_the_interactions(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    message = await run(server, client, "/upload", size=1000)
    assert isinstance(message, discord.WebhookMessage) and message.attachments[0].size == 1000
    error = await run(server, client, "/upload", size=10 * 1024 * 1024 + 1)
    assert isinstance(error, discord.HTTPException) and error.status == 413 and error.code == 40005


async def test_channel_send_rules(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    sent = await run(server, client, "/say", text="hello", where="channel")
    assert isinstance(sent, discord.Message)
    foreign = server.add_guild("not ours", bot_member=False)
    lounge = server.add_channel(foreign, "lounge")
    error = await run(server, client, "/say", text="hi", where="channel", channel=lounge)
    assert isinstance(error, discord.Forbidden) and error.code == 50001
    closed = server.add_user("closed", dms_closed=True)
    error = await run(server, client, "/say", text="hi", where="dm", user=closed)
    assert isinstance(error, discord.Forbidden) and error.code == 50007


async def test_nonce_deduplicates_channel_posts(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    channel = client.get_channel(server.general)
    assert isinstance(channel, discord.TextChannel)
    first = await channel.send("once", nonce="job123")
    again = await channel.send("once", nonce="job123")
    other = await channel.send("twice", nonce="job124")
    assert first.id == again.id != other.id
    assert [m["content"] for m in server.messages[server.general]] == ["once", "twice"]


async def test_rate_limit_with_via_is_retried_and_5xx_reported(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    channel = client.get_channel(server.general)
    assert isinstance(channel, discord.TextChannel)
    server.inject(rf"/channels/{server.general}/messages", status=429, times=1, retry_after=0.2)
    message = await channel.send("after a 429")
    assert message.content == "after a 429"
    posts = [r for r in server.requests if r.path == f"/channels/{server.general}/messages"]
    assert len(posts) == 2  # discord.py slept and retried
    server.inject(rf"/channels/{server.general}/messages", status=503, times=10)
    with pytest.raises(discord.HTTPException) as raised:
        await channel.send("down")
    assert raised.value.status == 503


async def test_resume_after_a_dropped_gateway(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    await server.drop_connections()
    async with asyncio.timeout(20):
        await server.identified.wait()
    text = await run(server, client, "/say", text="still here")
    assert isinstance(text, discord.InteractionCallbackResponse)


@pytest.mark.skipif(SPEC is None, reason="Discord's OpenAPI description is not in ../shared/specs")
async def test_bodies_match_discords_openapi_description(world) -> None:  # type: ignore[no-untyped-def]
    server, client, _ = world
    await run(server, client, "/say", text="spec check")
    await run(server, client, "/say", text="via channel", where="channel")
    assert SPEC is not None
    schemas = {"components": SPEC["components"]}
    checks = {
        "/callback": "CreateMessageInteractionCallbackRequest",
        f"/channels/{server.general}/messages": "MessageCreateRequest",
    }
    checked = 0
    for record in server.requests:
        for suffix, schema in checks.items():
            if record.method == "POST" and record.path.endswith(suffix) and isinstance(record.body, dict):
                if suffix == "/callback" and record.body.get("type") != 4:
                    continue
                jsonschema.validate(record.body, {"$ref": f"#/components/schemas/{schema}", **schemas})
                checked += 1
    assert checked >= 2
