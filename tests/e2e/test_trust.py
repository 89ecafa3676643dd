"""Issue 12 (operators, guild managers, global guards) through the loopback Discord and the real bot.

Each test builds its world (extra channel, a role, a stranger's own guild, a young account) before
the bot connects, so the bot's cache holds it as it would after Discord's GUILD_CREATE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.discord import Interaction, LoopbackDiscord
from storage import JobState, LedgerKind
from tests.e2e.harness import BotHarness, e2e_settings
from tests.e2e.test_video import is_result, job_ids, receipt


@dataclass
class World:
    videos: int  # a second channel in the sandbox guild
    sora_role: int  # held by alice only
    bob_guild: int  # a server bob owns (so he manages it), the bot installed there
    bob_channel: int
    young: int  # an account created two days ago


@pytest.fixture
def world(server: LoopbackDiscord) -> World:
    young = server.add_user("newbie", age_days=2)
    bob_guild = server.add_guild("Bob's Server", owner=server.bob)
    return World(videos=server.add_channel(server.guild, "videos"),
                 sora_role=server.add_role(server.guild, "sora-ok", {server.alice}),
                 bob_guild=bob_guild, bob_channel=server.add_channel(bob_guild, "bob-general"), young=young)


@pytest.fixture
async def harness(world: World, server: LoopbackDiscord, tmp_path: Path,
                  request: pytest.FixtureRequest) -> AsyncIterator[BotHarness]:
    """The conftest harness, started after `world` is built; `owner_ids="alice"` names a loopback user."""
    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs) if marker else {}
    if overrides.get("owner_ids") == "alice":
        overrides["owner_ids"] = str(server.alice)
    running = BotHarness(server=server, settings=e2e_settings(tmp_path, server, **overrides))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def text(harness: BotHarness, interaction: Interaction) -> str:
    return harness.ephemeral_text(interaction)


async def balance(harness: BotHarness, user: int) -> int:
    assert harness.bot is not None
    return await harness.bot.store.ledger.balance(user)


async def settings_(harness: BotHarness, user: int | None = None, **options: Any) -> Interaction:
    """/settings in the sandbox guild, by the admin (its manager) unless `user` is given."""
    server = harness.server
    return await harness.invoke("/settings", user=server.admin if user is None else user, channel=server.general,
                                options=options)


def fields(harness: BotHarness, interaction: Interaction) -> dict[str, str]:
    message = harness.response_message(interaction)
    assert message["flags"] & 64
    return {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}


# -- operators -----------------------------------------------------------------------------------------


async def test_a_manager_of_their_own_guild_cannot_mint_credits_or_set_prices(harness: BotHarness,
                                                                           world: World) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    before = await balance(harness, server.bob)
    granted = await harness.invoke("/credits-grant", user=server.bob, channel=world.bob_channel,
                                   options={"user": server.bob, "amount": 100000})
    assert "Only the bot's operators" in text(harness, granted)
    priced = await harness.invoke("/credits-set-price", user=server.bob, channel=world.bob_channel,
                                  option="sora-2", credits=0)
    assert "Only the bot's operators" in text(harness, priced)
    assert await balance(harness, server.bob) == before == 120
    assert not [e for e in await bot.store.ledger.history(server.bob) if e.kind is LedgerKind.ADJUST]
    assert await bot.store.prices.overrides() == {}
    ack = await harness.invoke("/sora", user=server.bob, channel=world.bob_channel, prompt="Still priced.")
    assert "Charged 16 credits" in await receipt(harness, ack)


async def test_the_application_owner_is_an_operator_anywhere(harness: BotHarness, world: World,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The loopback's application owner is the admin user: they grant even in a guild they do not manage."""
    server, bot = harness.server, harness.bot
    assert bot is not None and bot.operators == {server.admin: "application owner"}
    granted = await harness.invoke("/credits-grant", user=server.admin, channel=world.bob_channel,
                                   options={"user": server.bob, "amount": 30, "reason": "prize"})
    assert "balance now 150" in text(harness, granted)
    priced = await harness.invoke("/credits-set-price", user=server.admin, channel=world.bob_channel,
                                  option="kling-2.0", credits=3)
    assert "`kling-2.0`): 5 s: 15, 10 s: 30 credits" in text(harness, priced)
    in_dm = await harness.invoke("/credits-grant", user=server.admin, channel=server.dm_channel(server.admin),
                                 options={"user": server.bob, "amount": -50})
    assert "Removed 50 credits" in text(harness, in_dm) and await balance(harness, server.bob) == 100
    with caplog.at_level(logging.INFO, logger="bot.client"):
        await harness.restart()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("operators")]
    assert f"{server.admin} (application owner)" in line


@pytest.mark.settings(owner_ids="alice", admin_guild_ids="42", admin_role_id="7")
async def test_owner_ids_are_operators_and_retired_admin_settings_only_warn(
        harness: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    assert bot.operators == {server.alice: "OWNER_IDS", server.admin: "application owner"}
    granted = await harness.invoke("/credits-grant", user=server.alice, channel=server.general,
                                   options={"user": server.bob, "amount": 5})
    assert "balance now 125" in text(harness, granted)
    [entry] = [e for e in await bot.store.ledger.history(server.bob) if e.kind is LedgerKind.ADJUST]
    assert entry.actor_id == server.alice and entry.amount == 5
    refused = await harness.invoke("/credits-grant", user=server.bob, channel=server.general,
                                   options={"user": server.bob, "amount": 5})
    assert "Only the bot's operators" in text(harness, refused)
    with caplog.at_level(logging.INFO, logger="bot.client"):
        await harness.restart()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("ADMIN_GUILD_IDS is set but no longer used") for w in warnings)
    assert any(w.startswith("ADMIN_ROLE_ID is set but no longer used") for w in warnings)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("operators")]
    assert f"{server.alice} (OWNER_IDS)" in line and f"{server.admin} (application owner)" in line


async def test_team_members_are_the_operators_and_none_means_refused_for_all(
        harness: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    server = harness.server
    server.team_members = [server.bob]
    bot = await harness.restart()
    assert bot.operators == {server.bob: "team Sandbox Team"}
    granted = await harness.invoke("/credits-grant", user=server.bob, channel=server.general,
                                   options={"user": server.alice, "amount": 1})
    assert "balance now 121" in text(harness, granted)
    server.team_members = []  # a team with nobody in it and no OWNER_IDS: no operator at all
    with caplog.at_level(logging.INFO, logger="bot.client"):
        bot = await harness.restart()
    assert bot.operators == {}
    assert any("operators: none known" in r.getMessage() for r in caplog.records)
    for user in (server.admin, server.bob):
        refused = await harness.invoke("/credits-set-price", user=user, channel=server.general,
                                       option="kling-2.0", credits=0)
        assert "Only the bot's operators" in text(harness, refused)
    assert await bot.store.prices.overrides() == {}


# -- /settings -----------------------------------------------------------------------------------------


async def test_settings_shows_changes_clears_and_audits_every_control(harness: BotHarness, world: World) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    refused = await settings_(harness, user=server.alice, daily_cap=1)
    assert "Only this server's managers" in text(harness, refused)
    shown = fields(harness, await settings_(harness))
    assert shown["Channels"] == "every channel" and shown["Sora roles"] == "every member"
    assert shown["Daily cap per member"] == "none" and shown["Concurrent videos per member"] == "bot's limit (2)"
    changed = fields(harness, await settings_(harness, allow_channel=world.videos, sora_role_add=world.sora_role,
                                              daily_cap=50, concurrency=1))
    assert changed["Channels"] == f"<#{world.videos}>" and changed["Sora roles"] == f"<@&{world.sora_role}>"
    assert changed["Daily cap per member"] == "50 credits (UTC day)" and changed["Concurrent videos per member"] == "1"
    too_many = await settings_(harness, concurrency=3)
    assert "at most 2" in text(harness, too_many)
    both = await settings_(harness, clear="daily_cap", daily_cap=5)
    assert "do one or the other" in text(harness, both)
    await settings_(harness, allow_channel=server.general)
    await settings_(harness, disallow_channel=world.videos)
    assert fields(harness, await settings_(harness))["Channels"] == f"<#{server.general}>"
    for what in ("channels", "sora_roles", "daily_cap", "concurrency"):
        await settings_(harness, clear=what)
    again = fields(harness, await settings_(harness))
    assert again["Channels"] == "every channel" and again["Sora roles"] == "every member"
    assert again["Daily cap per member"] == "none" and again["Concurrent videos per member"] == "bot's limit (2)"
    assert "Recent changes" in again
    unchanged = await settings_(harness, clear="daily_cap")
    assert "Nothing changed" in str(harness.response_message(unchanged)["embeds"])
    history = list(reversed(await bot.store.guilds.history(server.guild, limit=50)))
    assert [(h.setting, h.old_value, h.new_value) for h in history] == [
        ("allowed_channels", "[]", f"[{world.videos}]"),
        ("sora_roles", "[]", f"[{world.sora_role}]"),
        ("member_daily_cap", None, "50"),
        ("member_concurrency", None, "1"),
        ("allowed_channels", f"[{world.videos}]", f"[{min(world.videos, server.general)}, "
                                                  f"{max(world.videos, server.general)}]"),
        ("allowed_channels", f"[{min(world.videos, server.general)}, {max(world.videos, server.general)}]",
         f"[{server.general}]"),
        ("allowed_channels", f"[{server.general}]", "[]"),
        ("sora_roles", f"[{world.sora_role}]", "[]"),
        ("member_daily_cap", "50", None),
        ("member_concurrency", "1", None),
    ]
    assert {h.actor_id for h in history} == {server.admin} and all(h.guild_id == server.guild for h in history)
    # bob's own guild is untouched by the sandbox guild's settings, and bob manages only his own
    assert fields(harness, await harness.invoke("/settings", user=server.bob, channel=world.bob_channel)
                  )["Channels"] == "every channel"
    assert await bot.store.guilds.history(world.bob_guild) == []


async def test_a_channel_not_allowed_refuses_video_commands_and_charges_nothing(harness: BotHarness,
                                                                               world: World) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    await settings_(harness, allow_channel=world.videos)
    refused = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Here?")
    assert f"only in <#{world.videos}>" in text(harness, refused)
    assert await job_ids(harness, server.alice) == [] and await balance(harness, server.alice) == 120
    await harness.invoke("/kling", user=server.alice, channel=world.videos, prompt="There.")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(world.videos, is_result(job_id))
    await harness.wait_job(job_id, JobState.DELIVERED)
    # a button pressed on a result posted before the rule changed obeys the rule too
    await settings_(harness, clear="channels")
    await settings_(harness, allow_channel=server.general)
    rerun = await harness.click(result, f"job:{job_id}:rerun", user=server.alice)
    assert f"only in <#{server.general}>" in text(harness, rerun)
    assert await job_ids(harness, server.alice) == [job_id]
    # outside the guild's installation (a DM with the bot, the user-installed app) its settings do not apply
    await harness.invoke("/kling", user=server.alice, channel=server.dm_channel(server.alice), prompt="DM.")
    await harness.invoke("/kling", user=server.alice, channel=world.videos, context="user_install", prompt="App.")
    assert len(await job_ids(harness, server.alice)) == 3


async def test_a_member_without_a_sora_role_may_kling_but_not_sora(harness: BotHarness, world: World) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    await settings_(harness, sora_role_add=world.sora_role)
    for command, options in (("/sora", {"prompt": "Expensive."}), ("/compare", {"prompt": "Both."})):
        refused = await harness.invoke(command, user=server.bob, channel=server.general, **options)
        assert "Sora is for members with one of these roles" in text(harness, refused)
    assert await job_ids(harness, server.bob) == [] and await balance(harness, server.bob) == 120
    await harness.invoke("/kling", user=server.bob, channel=server.general, prompt="Cheap.")
    [kling] = await job_ids(harness, server.bob)
    result = await harness.wait_for_message(server.general, is_result(kling))
    await harness.wait_job(kling, JobState.DELIVERED)
    button = await harness.click(result, f"job:{kling}:sora", user=server.bob)
    assert "Sora is for members" in text(harness, button)
    assert await job_ids(harness, server.bob) == [kling] and await balance(harness, server.bob) == 110
    allowed = await harness.click(result, f"job:{kling}:sora", user=server.alice)
    assert "Sora 2" in harness.response_message(allowed)["embeds"][0]["title"]
    assert await balance(harness, server.alice) == 120 - 16  # Kling 5 s becomes Sora 4 s


@pytest.mark.settings(max_concurrent_jobs=5, simulated_speed=0.05)
async def test_the_per_member_daily_cap_holds_under_a_race(harness: BotHarness, world: World) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    await settings_(harness, daily_cap=25)
    racing = await asyncio.gather(*(harness.invoke("/kling", user=server.alice, channel=server.general,
                                                   prompt=f"Race {n}.", respond_within=None) for n in range(4)))
    for interaction in racing:
        await interaction.wait_response(within=10)
    refusals = [i for i in racing if harness.response_message(i)["flags"] & 64]
    assert len(await job_ids(harness, server.alice)) == 2 and len(refusals) == 2
    assert all("cap spending at 25 credits per member" in text(harness, i) for i in refusals)
    assert await balance(harness, server.alice) == 100
    # the cap is this guild's: elsewhere (bob's server, a DM) alice may still spend
    await harness.invoke("/kling", user=server.alice, channel=world.bob_channel, prompt="Elsewhere.")
    assert len(await job_ids(harness, server.alice)) == 3
    assert (await bot.store.ledger.audit()) == {"balance_mismatch": 0, "negative_balance": 0,
                                                "unsettled_finished_jobs": 0, "duplicate_entries": 0}


@pytest.mark.settings(max_concurrent_jobs=5, simulated_speed=0.05)
async def test_the_per_member_concurrency_cap_holds_under_a_race(harness: BotHarness) -> None:
    server = harness.server
    await settings_(harness, concurrency=1)
    racing = await asyncio.gather(*(harness.invoke("/kling", user=server.alice, channel=server.general,
                                                   prompt=f"Race {n}.", respond_within=None) for n in range(3)))
    for interaction in racing:
        await interaction.wait_response(within=10)
    refusals = [i for i in racing if harness.response_message(i)["flags"] & 64]
    [job_id] = await job_ids(harness, server.alice)
    assert len(refusals) == 2
    assert all("rendering in this server (limit 1)" in text(harness, i) for i in refusals)
    assert await balance(harness, server.alice) == 110
    pair = await harness.invoke("/compare", user=server.bob, channel=server.general, prompt="Two at once.")
    assert "starts 2 videos at once but the limit in this server is 1" in text(harness, pair)
    await harness.job_settled(job_id)
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="After.")
    assert len(await job_ids(harness, server.alice)) == 2


# -- global guards -------------------------------------------------------------------------------------


@pytest.mark.settings(daily_spend_limit=25)
async def test_daily_spend_limit_refuses_new_jobs_across_users_net_of_refunds(harness: BotHarness) -> None:
    server = harness.server
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="One. [fail:content_policy]")
    await harness.invoke("/kling", user=server.bob, channel=server.dm_channel(server.bob), prompt="Two.")
    refused = await harness.invoke("/kling", user=server.admin, channel=server.general, prompt="Three.")
    assert "daily spending limit for everyone" in text(harness, refused)
    assert await job_ids(harness, server.admin) == [] and await balance(harness, server.admin) == 120
    [failing] = await job_ids(harness, server.alice)
    await harness.wait_job(failing, JobState.FAILED)  # refunded: its 10 credits go back to the day's budget
    await harness.invoke("/kling", user=server.admin, channel=server.general, prompt="Three.")
    assert len(await job_ids(harness, server.admin)) == 1 and await balance(harness, server.admin) == 110
    [delivered] = await job_ids(harness, server.admin)
    await harness.wait_job(delivered, JobState.DELIVERED)  # a rendered job still counts
    again = await harness.invoke("/kling", user=server.admin, channel=server.general, prompt="Four.")
    assert "daily spending limit for everyone" in text(harness, again)
    own_key_free = await harness.invoke("/credits", user=server.admin, channel=server.general)
    assert "**110** credits" in harness.response_message(own_key_free)["embeds"][0]["description"]


async def test_a_young_account_gets_no_grant_and_is_told_when_grants_start(harness: BotHarness,
                                                                          world: World) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    refused = await harness.invoke("/kling", user=world.young, channel=server.general, prompt="Free video?")
    message = text(harness, refused)
    assert "you have 0" in message and "Free credits start once your Discord account is 7 days old" in message
    starts = int((world.young >> 22) / 1000 + 1420070400 + 7 * 86400)
    assert f"<t:{starts}:f>" in message
    assert await balance(harness, world.young) == 0
    assert [e.kind for e in await bot.store.ledger.history(world.young)] == []
    shown = await harness.invoke("/credits", user=world.young, channel=server.general)
    assert "**0** credits" in harness.response_message(shown)["embeds"][0]["description"]
    assert f"<t:{starts}:f>" in harness.response_message(shown)["embeds"][0]["description"]
    # an operator may still grant credits by hand, and they are spendable
    await harness.invoke("/credits-grant", user=server.admin, channel=server.general,
                         options={"user": world.young, "amount": 10})
    await harness.invoke("/kling", user=world.young, channel=server.general, prompt="Paid by a grant.")
    assert len(await job_ids(harness, world.young)) == 1 and await balance(harness, world.young) == 0
    assert await balance(harness, server.alice) == 120  # an old account is granted as before
