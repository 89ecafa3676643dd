"""An unmodified discord.py `commands.Bot` against the loopback Discord: every rule the real bot relies on.

The bot here is a tiny test-only one; what is under test is the loopback server (and that discord.py sees its
answers as it would see Discord's). Discord's clock is frozen: the 3 s and 15 min rules fire only when a test
advances it, never because the machine is slow.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.sandbox.discord import LoopbackDiscord
from tests.discord_spec import SpecChecker
from tests.e2e.harness import FrozenClock, LoopbackDriver, running_client

MiB = 1024 * 1024


class RetryButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"job:(?P<id>[0-9]+):retry"):
    """A per-job button that survives restarts (the pattern the real bot uses)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Retry", custom_id=f"job:{job_id}:retry"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> RetryButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"retrying job {self.job_id}", view=None)


class RenameModal(discord.ui.Modal, title="Rename"):
    name: discord.ui.TextInput[Any] = discord.ui.TextInput(label="New name", custom_id="new_name")

    def __init__(self) -> None:
        super().__init__(custom_id="rename")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"renamed to {self.name.value}", ephemeral=True)


class TinyBot(commands.Bot):
    """Commands that each exercise one Discord rule; results (or errors) are handed to the test."""

    def __init__(self) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.5)
        self.gate = asyncio.Event()  # commands with hold=True wait here (the test moves the clock first)
        self.results: dict[str, asyncio.Queue[Any]] = {}
        self.seen: dict[str, Any] = {}
        self._define()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RetryButton)
        await self.tree.sync()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause before re-identifying: the loopback gateway has no identify rate limit."""

    def result_queue(self, name: str) -> asyncio.Queue[Any]:
        return self.results.setdefault(name, asyncio.Queue())

    async def result(self, name: str, timeout: float = 15.0) -> Any:
        async with asyncio.timeout(timeout):
            return await self.result_queue(name).get()

    async def _record(self, name: str, action: Any) -> None:
        try:
            outcome = await action
        except Exception as error:  # the test asserts on what discord.py raised
            outcome = error
        self.result_queue(name).put_nowait(outcome)

    def _define(self) -> None:
        tree = self.tree

        @tree.command(name="ping", description="Answer at once")
        async def ping(interaction: discord.Interaction) -> None:
            await self._record("ping", interaction.response.send_message("pong"))

        @tree.command(name="render", description="Typed options")
        @app_commands.choices(strength=[app_commands.Choice(name="half", value=0.5),
                                        app_commands.Choice(name="full", value=1.0)])
        async def render(interaction: discord.Interaction, prompt: str, duration: Literal[5, 10],
                         strength: app_commands.Choice[float], hd: bool, style: Literal["anime", "real"],
                         image: discord.Attachment | None = None) -> None:
            data = await image.read() if image is not None else None
            self.seen["render"] = {"prompt": prompt, "duration": duration, "strength": strength.value, "hd": hd,
                                   "style": style, "image": image, "bytes": data,
                                   "filesize_limit": interaction.filesize_limit}
            await self._record("render", interaction.response.send_message("ok", ephemeral=True))

        @tree.command(name="slow", description="Acks only when the test says so")
        async def slow(interaction: discord.Interaction) -> None:
            await self.gate.wait()
            await self._record("slow", interaction.response.send_message("late"))

        @tree.command(name="upload", description="Defer, then a followup with a file")
        async def upload(interaction: discord.Interaction, size: int, hold: bool = False) -> None:
            await interaction.response.defer(thinking=True)
            if hold:
                await self.gate.wait()
            file = discord.File(io.BytesIO(b"v" * size), filename="clip.bin")
            await self._record("upload", interaction.followup.send("here", file=file, wait=True))

        @tree.command(name="post", description="channel.send, optionally with a nonce and a file")
        async def post(interaction: discord.Interaction, text: str, nonce: str | None = None, size: int = 0) -> None:
            self.seen["post"] = {"app_permissions": interaction.app_permissions,
                                 "guild_integration": interaction.is_guild_integration()}
            await interaction.response.defer(ephemeral=True)
            files = [discord.File(io.BytesIO(b"p" * size), filename="big.bin")] if size else []
            kwargs: dict[str, Any] = {"nonce": nonce} if nonce else {}
            await self._record("post", interaction.channel.send(text, files=files, **kwargs))  # type: ignore[union-attr]

        @tree.command(name="dm", description="DM the invoker")
        async def dm(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True)
            await self._record("dm", interaction.user.send("a private word"))

        @tree.command(name="job", description="A message with a per-job button")
        async def job(interaction: discord.Interaction, job_id: int) -> None:
            view = discord.ui.View(timeout=None)
            view.add_item(RetryButton(job_id))
            await self._record("job", interaction.response.send_message(f"job {job_id} failed", view=view))

        @tree.command(name="rename", description="Open a modal")
        async def rename(interaction: discord.Interaction) -> None:
            await self._record("rename", interaction.response.send_modal(RenameModal()))

        @tree.command(name="card", description="A Components V2 reply")
        async def card(interaction: discord.Interaction) -> None:
            view = discord.ui.LayoutView()
            view.add_item(discord.ui.Container(discord.ui.TextDisplay("**Job 7** is ready")))
            await self._record("card", interaction.response.send_message(view=view))

        credits = app_commands.Group(name="credits", description="Credit admin")

        @credits.command(name="grant", description="Grant credits")
        async def grant(interaction: discord.Interaction, amount: int, target: discord.User) -> None:
            self.seen["grant"] = (amount, target)
            await self._record("grant", interaction.response.send_message(f"granted {amount} to {target.name}"))

        tree.add_command(credits)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def bot(server: LoopbackDiscord) -> AsyncIterator[TinyBot]:
    async with running_client(TinyBot(), server) as client:
        yield client


async def test_login_and_sync_record_the_commands_with_typed_options(server: LoopbackDiscord, bot: TinyBot) -> None:
    """The bot logs in as the application and the bulk overwrite is recorded with option types and choices."""
    assert bot.user is not None and bot.user.id == server.app_id
    assert bot.get_guild(server.guild) is not None and bot.get_channel(server.general) is not None
    commands_by_name = {c["name"]: c for c in server.registered_commands()}
    assert set(commands_by_name) == {"ping", "render", "slow", "upload", "post", "dm", "job", "rename", "card",
                                     "credits"}
    render = {o["name"]: o for o in commands_by_name["render"]["options"]}
    assert [(n, o["type"]) for n, o in render.items()] == [
        ("prompt", 3), ("duration", 4), ("strength", 10), ("hd", 5), ("style", 3), ("image", 11)]
    assert [c["value"] for c in render["duration"]["choices"]] == [5, 10]
    assert not render["image"].get("required", False)
    grant = commands_by_name["credits"]["options"][0]
    assert (grant["name"], grant["type"]) == ("grant", 1)
    assert [(o["name"], o["type"]) for o in grant["options"]] == [("amount", 4), ("target", 6)]
    assert all(c["id"] and c["application_id"] == str(server.app_id) for c in commands_by_name.values())


async def test_ping_is_answered_within_the_window(server: LoopbackDiscord, loopback: LoopbackDriver,
                                                  bot: TinyBot) -> None:
    """/ping gets a type 4 callback; the reply is a message in the channel log."""
    interaction = await loopback.invoke("/ping")
    response = await interaction.wait_response()
    assert response["type"] == 4 and response["data"]["content"] == "pong"
    assert isinstance(await bot.result("ping"), discord.InteractionCallbackResponse)
    message = loopback.response_message(interaction)
    assert message["content"] == "pong" and message["interaction_metadata"]["user"]["id"] == str(server.alice)
    assert [e["type"] for e in server.channel_log(server.general)] == ["message_create"]


async def test_options_arrive_typed_from_the_registered_command(server: LoopbackDiscord, loopback: LoopbackDriver,
                                                                bot: TinyBot) -> None:
    """int/number/bool/string choices and an Attachment reach the command typed; the file is downloadable."""
    image = b"\x89PNG fake image bytes"
    await loopback.invoke("/render", prompt="a cat", duration="10", strength=0.5, hd="true", style="anime",
                          attachments={"image": ("cat.png", image, "image/png")})
    await bot.result("render")
    seen = bot.seen["render"]
    assert (seen["prompt"], seen["duration"], seen["strength"], seen["hd"], seen["style"]) == \
        ("a cat", 10, 0.5, True, "anime")
    assert isinstance(seen["image"], discord.Attachment)
    assert (seen["image"].filename, seen["image"].size, seen["image"].content_type) == \
        ("cat.png", len(image), "image/png")
    assert seen["bytes"] == image and seen["filesize_limit"] == 10 * MiB
    with pytest.raises(KeyError):
        await loopback.invoke("/render", prompt="missing required options")


async def test_subcommand_with_a_user_option(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """"/credits grant" becomes a type 1 option with nested options; the user option is resolved."""
    await loopback.invoke("/credits grant", user=server.admin, amount=5, target=server.bob)
    await bot.result("grant")
    amount, target = bot.seen["grant"]
    assert amount == 5 and isinstance(target, discord.Member | discord.User) and target.id == server.bob


async def test_ack_after_three_seconds_is_unknown_interaction(server: LoopbackDiscord, clock: FrozenClock,
                                                              loopback: LoopbackDriver, bot: TinyBot) -> None:
    """A callback after the 3 s window is 404/10062, which discord.py raises as NotFound."""
    interaction = await loopback.invoke("/slow", respond_within=None)
    clock.advance(3.5)
    bot.gate.set()
    error = await bot.result("slow")
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert interaction.response_type is None and interaction.error == "late"
    assert server.messages[server.general] == []


async def test_a_second_callback_is_refused(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """Acking twice (e.g. from two processes) is 400/40060 in Discord's error envelope."""
    interaction = await loopback.invoke("/ping")
    await bot.result("ping")
    url = f"{server.api_base}/interactions/{interaction.id}/{interaction.token}/callback?with_response=true"
    async with aiohttp.ClientSession() as http, \
            http.post(url, json={"type": 4, "data": {"content": "again"}}) as response:
        assert response.status == 400 and response.headers["Content-Type"] == "application/json"
        assert await response.json() == {"message": "Interaction has already been acknowledged.", "code": 40060}


async def test_deferred_followup_with_a_file(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """Defer (type 5, a loading message), then a multipart followup whose bytes the server serves back."""
    interaction = await loopback.invoke("/upload", size=4096)
    assert interaction.response_type == 5
    sent = await bot.result("upload")
    assert isinstance(sent, discord.WebhookMessage)
    assert [a.size for a in sent.attachments] == [4096]
    (followup_id,) = await interaction.wait_followups(1)
    assert sent.id == followup_id
    assert await sent.attachments[0].read() == b"v" * 4096
    original = loopback.response_message(interaction)
    assert original["flags"] & 128  # still "thinking": the bot never edited it


async def test_token_expires_after_fifteen_minutes(server: LoopbackDiscord, clock: FrozenClock,
                                                   loopback: LoopbackDriver, bot: TinyBot) -> None:
    """A followup 15 min after the interaction is 401/50027, a plain HTTPException in discord.py."""
    interaction = await loopback.invoke("/upload", size=10, hold=True)
    assert interaction.response_type == 5
    clock.advance(15 * 60 + 1)
    bot.gate.set()
    error = await bot.result("upload")
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (401, 50027)
    assert interaction.followups == []


async def test_upload_limits(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """Per-file limits: the interaction's attachment_size_limit for followups, the guild tier for channel posts."""
    await loopback.invoke("/upload", size=10 * MiB + 1)
    error = await bot.result("upload")
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (413, 40005)
    boosted = server.add_guild("Boosted", premium_tier=2)
    lounge = server.add_channel(boosted, "lounge")
    await server.broadcast("GUILD_CREATE", server.guild_payload(boosted))
    await loopback.invoke("/post", channel=lounge, text="big", size=11 * MiB)
    sent = await bot.result("post")
    assert isinstance(sent, discord.Message) and sent.attachments[0].size == 11 * MiB
    await loopback.invoke("/post", channel=server.general, text="big", size=11 * MiB)
    error = await bot.result("post")
    assert isinstance(error, discord.HTTPException) and error.status == 413


async def test_duplicate_nonce_returns_the_existing_message(server: LoopbackDiscord, loopback: LoopbackDriver,
                                                            bot: TinyBot) -> None:
    """Same nonce, same author, same channel within minutes: Discord returns the first message."""
    await loopback.invoke("/post", text="result of job 9", nonce="job9")
    first = await bot.result("post")
    await loopback.invoke("/post", text="result of job 9", nonce="job9")
    again = await bot.result("post")
    await loopback.invoke("/post", text="no nonce given")  # discord.py sends a random one
    other = await bot.result("post")
    assert first.id == again.id != other.id
    posted = [m for m in server.messages[server.general] if not m["flags"] & 64]
    assert [m["content"] for m in posted] == ["result of job 9", "no nonce given"]
    bodies = [r.body for r in server.requests if r.path == f"/channels/{server.general}/messages"]
    assert [b.get("enforce_nonce") for b in bodies] == [True, True, True]


async def test_rate_limit_is_retried_and_a_500_too(server: LoopbackDiscord, loopback: LoopbackDriver,
                                                   bot: TinyBot) -> None:
    """A 429 with Via and retry_after is slept on and retried by discord.py; so is one 500 on a channel post."""
    path = f"/channels/{server.general}/messages"
    server.inject(re.escape(path), status=429, times=1, retry_after=0.2, method="POST")
    await loopback.invoke("/post", text="after a 429", nonce="rl1")
    sent = await bot.result("post")
    assert isinstance(sent, discord.Message) and sent.content == "after a 429"
    server.inject(re.escape(path), status=500, times=1, method="POST")
    await loopback.invoke("/post", text="after a 500", nonce="rl2")
    sent = await bot.result("post")
    assert isinstance(sent, discord.Message) and sent.content == "after a 500"
    posts = [r.body["nonce"] for r in server.requests if r.path == path]
    assert posts == ["rl1", "rl1", "rl2", "rl2"]
    assert [m["content"] for m in server.messages[server.general] if not m["flags"] & 64] == \
        ["after a 429", "after a 500"]


async def test_dynamic_button_round_trip(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """A click reaches the DynamicItem, whose type 7 answer edits the message; the log has both versions."""
    interaction = await loopback.invoke("/job", job_id=42)
    message = loopback.response_message(interaction)
    assert message["components"][0]["components"][0]["custom_id"] == "job:42:retry"
    click = await loopback.click(message, "Retry", user=server.bob)
    assert click.response_type == 7
    assert message["content"] == "retrying job 42" and message["components"] == []
    log = server.channel_log(server.general)
    assert [e["type"] for e in log] == ["message_create", "message_update"]
    assert log[0]["message"]["content"] == "job 42 failed"


async def test_modal_round_trip(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """A modal (type 9) is submitted in its own layout and its on_submit answers."""
    interaction = await loopback.invoke("/rename")
    assert interaction.response_type == 9 and interaction.modal is not None
    submitted = await loopback.submit_modal("rename", {"new_name": "Cat video"})
    assert submitted.response_type == 4
    assert loopback.ephemeral_text(submitted) == "renamed to Cat video"


async def test_components_v2_reply(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """A LayoutView reply carries IS_COMPONENTS_V2 and no content."""
    interaction = await loopback.invoke("/card")
    message = loopback.response_message(interaction)
    assert message["flags"] & (1 << 15) and message["content"] == ""
    assert message["components"][0]["type"] == 17


async def test_dm_creation_and_closed_dms(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """user.send opens a DM channel; a user with DMs closed gives Forbidden 50007."""
    await loopback.invoke("/dm")
    sent = await bot.result("dm")
    assert isinstance(sent, discord.Message)
    dm = server.dm_channel(server.alice)
    assert [m["content"] for m in server.messages[dm]] == ["a private word"]
    closed = server.add_user("hermit", dms_closed=True)
    server.guilds[server.guild].members.add(closed)
    await loopback.invoke("/dm", user=closed)
    error = await bot.result("dm")
    assert isinstance(error, discord.Forbidden) and error.code == 50007


async def test_channel_access_rules(server: LoopbackDiscord, loopback: LoopbackDriver, bot: TinyBot) -> None:
    """User install in a foreign guild: no channel.send (50001); no Send Messages: 50013; the app permissions say so."""
    foreign = server.add_guild("Someone else's", bot_member=False)
    lounge = server.add_channel(foreign, "lounge")
    interaction = await loopback.invoke("/post", channel=lounge, text="hello")
    assert interaction.context == "user_install" and interaction.payload["authorizing_integration_owners"] == \
        {"1": str(server.alice)}
    error = await bot.result("post")
    assert isinstance(error, discord.Forbidden) and error.code == 50001
    assert bot.seen["post"]["guild_integration"] is False
    muted = server.add_channel(server.guild, "announcements", bot_can_send=False)
    await server.broadcast("CHANNEL_CREATE", server.channel_payload(muted))
    await loopback.invoke("/post", channel=muted, text="hello")
    error = await bot.result("post")
    assert isinstance(error, discord.Forbidden) and error.code == 50013
    assert bot.seen["post"]["app_permissions"].send_messages is False
    assert bot.seen["post"]["guild_integration"] is True
    group = server.add_group_dm("friends", [server.alice, server.bob])
    interaction = await loopback.invoke("/post", channel=group, text="hello")
    assert interaction.payload["context"] == 2
    error = await bot.result("post")
    assert isinstance(error, discord.Forbidden) and error.code == 50001


async def test_resume_after_a_dropped_gateway(server: LoopbackDiscord, loopback: LoopbackDriver,
                                              bot: TinyBot) -> None:
    """After a drop the bot RESUMEs; an interaction fired while it was away is replayed and answered."""
    await server.drop_connections()
    interaction = await loopback.invoke("/ping", respond_within=None)  # lands in the session's backlog
    await interaction.wait_response(within=20)
    assert interaction.response_type == 4
    assert [kind for kind, _ in server.gateway_log] == ["IDENTIFY", "RESUME"]


async def test_invalid_session_makes_the_bot_identify_again(server: LoopbackDiscord, loopback: LoopbackDriver,
                                                            bot: TinyBot) -> None:
    """A session Discord forgot answers RESUME with op 9; discord.py then identifies afresh and works."""
    await server.drop_connections(resumable=False)
    async with asyncio.timeout(20):
        await server.identified.wait()
    await loopback.invoke("/ping", respond_within=20)
    assert [kind for kind, _ in server.gateway_log] == ["IDENTIFY", "INVALID_SESSION", "IDENTIFY"]


async def test_request_bodies_match_discords_openapi_description(spec_checker: SpecChecker | None,
                                                                 loopback: LoopbackDriver, bot: TinyBot) -> None:
    """Every JSON body discord.py sent (sync, callbacks, followups, channel posts, DMs) is valid per the spec.

    The `server` fixture checks each body as it arrives and fails at teardown on a violation; this test makes
    sure each kind of request was among those checked."""
    if spec_checker is None:
        pytest.skip("Discord's OpenAPI description is not in ../shared/specs (see tests/discord_spec.py)")
    await loopback.invoke("/ping")
    await loopback.invoke("/upload", size=100)
    await bot.result("upload")
    await loopback.invoke("/post", text="spec", nonce="spec1")
    await bot.result("post")
    await loopback.invoke("/dm")
    await bot.result("dm")
    await loopback.invoke("/job", job_id=1)
    kinds = " ".join(spec_checker.checked)
    for expected in ("PUT", "callback", "webhooks", "channels", "users"):
        assert expected in kinds, f"no {expected} request was validated: {sorted(set(spec_checker.checked))}"
    assert spec_checker.violations == []
