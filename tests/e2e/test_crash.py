"""Crash consistency: SIGKILL the real bot process at each point of a job's life, restart it, and
check that nothing is lost or duplicated: one provider task per job, one charge or refund, one
result post or failure notice, and ONE public message per job at the end: the card (the command's
answer) retired once the result or notice is posted next to it, or itself edited into it where no post
route exists (a user install), never with a live Cancel button. Routes: the guild channel, the bot's DM,
a user install's card; /compare and the cancel flow too. Prints a table of scenarios × outcomes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.faults import POINTS
from bot.sandbox.discord import Interaction, LoopbackDiscord
from storage import Job, JobState, LedgerKind, Store
from tests.e2e.one_message import deleted_ids, one_public_message, only_result_buttons
from tests.e2e.process import BotProcess

pytestmark = pytest.mark.slow
RESULTS: dict[str, str] = {}
FAILURE_POINTS = ("during_refund", "after_refund", "after_notice")
RESULT_POINTS = tuple(p for p in POINTS if p not in (*FAILURE_POINTS, "after_cancel"))
SECRETS = ("crash-test-discord-token", "crash-secret-key-" + "x" * 32)


@pytest.fixture(scope="module", autouse=True)
def report() -> AsyncIterator[None]:
    yield
    if RESULTS:
        width = max(len(point) for point in RESULTS)
        print("\n\n" + "crash point (route)".ljust(width) + "  outcome after restart")
        for point, outcome in RESULTS.items():
            print(f"{point.ljust(width)}  {outcome}")


def bot_for(server: LoopbackDiscord, tmp_path: Path, speed: str = "0.002") -> BotProcess:
    return BotProcess(server, tmp_path, DISCORD_TOKEN=SECRETS[0], SIMULATED_SPEED=speed, SIMULATED_FPS="2",
                      SECRET_KEY=SECRETS[1], WORKER_ID="crash-worker", LOG_LEVEL="DEBUG")


def channel_for(server: LoopbackDiscord, where: str) -> int:
    if where == "dm":
        return server.dm_channel(server.alice)
    if where == "user_install":
        return server.add_channel(server.add_guild("Someone else's server", bot_member=False), "lounge")
    return server.general


async def settled(tmp_path: Path, user: int) -> tuple[list[Job], dict[int, list[LedgerKind]], dict[str, int]]:
    """The user's jobs once none is active (the final state is written right after the post)."""
    store = await Store.open(tmp_path / "bot.sqlite3")
    try:
        for _ in range(200):
            jobs = await store.jobs.for_user(user)
            owed = [row for job in jobs for row in await store.jobs.outbox_for_job(job.id) if row["done_at"] is None]
            if jobs and all(job.state.terminal for job in jobs) and not owed:
                break
            await asyncio.sleep(0.05)
        assert not owed, "a notice is still owed after the restart"
        kinds = {job.id: [e.kind for e in await store.ledger.entries_for_job(job.id)] for job in jobs}
        return jobs, kinds, await store.ledger.audit()
    finally:
        await store.close()


def live_tasks(tmp_path: Path, job_id: int) -> int:
    tasks = [json.loads(p.read_text()) for p in (tmp_path / "videos" / "simulated").glob(f"sim-{job_id}-*.json")]
    return len([task for task in tasks if not task["canceled"]])


def card(server: LoopbackDiscord, interaction: Interaction) -> dict[str, Any] | None:
    """The command's answer as it is now; None when there is none (the ack was lost with the crash) or it
    was deleted (a result or notice posted next to it retires it)."""
    if interaction.original_message_id is None:
        return None
    return next((m for m in server.all_messages() if m["id"] == str(interaction.original_message_id)), None)


async def one_public(server: LoopbackDiscord, channel: int) -> dict[str, Any]:
    """The channel's one public message at the end (the card retired, nothing posted twice)."""
    return await one_public_message(server, channel, settle=0.5)


def buttons(message: dict[str, Any]) -> list[str]:
    return [c.get("custom_id", "") for row in message["components"] for c in row["components"]]


def check_common(bot: BotProcess, tmp_path: Path, jobs: list[Job], kinds: dict[int, list[LedgerKind]],
                 audit: dict[str, int], interaction: Interaction) -> None:
    assert audit == {"balance_mismatch": 0, "negative_balance": 0, "unsettled_finished_jobs": 0,
                     "duplicate_entries": 0}
    for job in jobs:
        assert kinds[job.id].count(LedgerKind.RESERVE) == 1
        assert kinds[job.id].count(LedgerKind.CAPTURE) + kinds[job.id].count(LedgerKind.REFUND) == 1
    log = bot.log.read_text()
    assert "job" in log  # the log is really there
    for secret in (*SECRETS, interaction.token):  # never logged, even at DEBUG
        assert secret not in log


@pytest.mark.parametrize(("point", "where"), [(p, "guild") for p in RESULT_POINTS]
                         + [("after_post", "dm"), ("after_delivered", "dm"), ("after_post", "user_install")])
async def test_result_is_delivered_and_charged_once(server: LoopbackDiscord, tmp_path: Path, point: str,
                                                    where: str) -> None:
    bot = bot_for(server, tmp_path)
    channel = channel_for(server, where)
    await bot.start(BOT_CRASH_AT=point)
    interaction = await server.invoke("/kling", user=server.alice, channel=channel, options={"prompt": "Crash test"})
    assert await bot.wait_exit() == -9
    await bot.start()  # the same data directory, no crash point
    try:
        result = await server.wait_for_message(channel, lambda m: "is ready" in m["content"], within=30)
        [job], kinds, audit = await settled(tmp_path, server.alice)
        check_common(bot, tmp_path, [job], kinds, audit, interaction)
        assert job.state is JobState.DELIVERED and kinds[job.id][-1] is LedgerKind.CAPTURE
        assert live_tasks(tmp_path, job.id) == 1, "the provider got the job twice"
        posted = [m for m in server.messages[channel] if f"job #{job.id}" in m["content"]]
        assert len(posted) == 1, "the video was posted more than once"
        only = await one_public(server, channel)  # one message per job: the card is gone or became the result
        assert only["id"] == result["id"] and only_result_buttons(only)
        acked = interaction.original_message_id is not None
        if where == "user_install":
            assert not acked or result["id"] == str(interaction.original_message_id)
        elif acked:
            assert str(interaction.original_message_id) in deleted_ids(server, channel) and card(
                server, interaction) is None
        rerun = await server.click(result, f"job:{job.id}:rerun", user=server.alice)
        await rerun.wait_response(within=10)
        RESULTS[f"{point} ({where})"] = (f"delivered once, charged once, 1 provider task, 1 message, buttons work"
                                         f"{'' if acked else ' (ack lost with the crash)'}")
    finally:
        await bot.stop()


@pytest.mark.parametrize(("point", "where"), [(p, "guild") for p in FAILURE_POINTS]
                         + [("after_refund", "dm"), ("after_refund", "user_install"), ("after_notice", "user_install")])
async def test_failure_is_refunded_and_told_once(server: LoopbackDiscord, tmp_path: Path, point: str,
                                                 where: str) -> None:
    bot = bot_for(server, tmp_path)
    channel = channel_for(server, where)
    await bot.start(BOT_CRASH_AT=point)
    interaction = await server.invoke("/kling", user=server.alice, channel=channel,
                                      options={"prompt": "Crash test [fail:content_policy]"})
    assert await bot.wait_exit() == -9
    await bot.start()
    try:
        await server.wait_for_message(None, lambda m: "failed" in m["content"], within=30)
        [job], kinds, audit = await settled(tmp_path, server.alice)
        await asyncio.sleep(0.5)  # a duplicate notice would arrive now
        check_common(bot, tmp_path, [job], kinds, audit, interaction)
        assert job.state is JobState.FAILED and kinds[job.id][-1] is LedgerKind.REFUND
        notices = [m for m in server.all_messages() if f"job #{job.id} " in m["content"] and "failed" in m["content"]]
        assert len(notices) == 1, f"{len(notices)} failure notices"
        assert notices[0]["channel_id"] == str(channel)
        only = await one_public(server, channel)
        assert only["id"] == notices[0]["id"] and buttons(only) == [] and "Failed" in json.dumps(only["embeds"])
        if where == "user_install":  # no post route: the card itself became the notice
            assert only["id"] == str(interaction.original_message_id)
        else:
            assert str(interaction.original_message_id) in deleted_ids(server, channel)
        RESULTS[f"{point} ({where})"] = "failed, refunded once, 1 notice, the card retired (1 message, no Cancel)"
    finally:
        await bot.stop()


async def test_compare_is_posted_once(server: LoopbackDiscord, tmp_path: Path) -> None:
    bot = bot_for(server, tmp_path)
    await bot.start(BOT_CRASH_AT="after_post")
    interaction = await server.invoke("/compare", user=server.alice, channel=server.general,
                                      options={"prompt": "Crash compare"})
    assert await bot.wait_exit() == -9
    await bot.start()
    try:
        await server.wait_for_message(server.general, lambda m: "comparison is ready" in m["content"], within=30)
        jobs, kinds, audit = await settled(tmp_path, server.alice)
        check_common(bot, tmp_path, jobs, kinds, audit, interaction)
        assert len(jobs) == 2 and {job.state for job in jobs} == {JobState.DELIVERED}
        assert all(live_tasks(tmp_path, job.id) == 1 for job in jobs)
        await asyncio.sleep(0.5)
        posts = [m for m in server.messages[server.general] if "comparison is ready" in m["content"]]
        assert len(posts) == 1
        assert (await one_public(server, server.general))["id"] == posts[0]["id"]
        assert str(interaction.original_message_id) in deleted_ids(server, server.general)
        RESULTS["after_post (/compare)"] = "both delivered in one post, charged once each, shared card retired"
    finally:
        await bot.stop()


async def test_cancel_is_refunded_once_and_the_card_updated(server: LoopbackDiscord, tmp_path: Path) -> None:
    """SIGKILL right after the cancel transaction (before the user got an answer)."""
    bot = bot_for(server, tmp_path, speed="0.05")  # long enough to press Cancel while it renders
    await bot.start(BOT_CRASH_AT="after_cancel")
    interaction = await server.invoke("/kling", user=server.alice, channel=server.general,
                                      options={"prompt": "Crash cancel"})
    await interaction.wait_response(within=10)
    store = await Store.open(tmp_path / "bot.sqlite3")
    try:
        async with asyncio.timeout(20):
            while not (jobs := await store.jobs.for_user(server.alice)) or jobs[0].state not in (
                    JobState.SUBMITTED, JobState.RUNNING):
                await asyncio.sleep(0.05)
    finally:
        await store.close()
    ask = await server.click(card(server, interaction), f"job:{jobs[0].id}:cancel", user=server.alice)  # type: ignore[arg-type]
    await ask.wait_response(within=10)
    confirm = next(m for m in server.all_messages() if m["id"] == str(ask.original_message_id))
    await server.click(confirm, f"job:{jobs[0].id}:stop", user=server.alice)
    assert await bot.wait_exit() == -9
    await bot.start()
    try:
        [job], kinds, audit = await settled(tmp_path, server.alice)
        check_common(bot, tmp_path, [job], kinds, audit, interaction)
        assert job.state is JobState.CANCELED and kinds[job.id][-1] is LedgerKind.REFUND
        async with asyncio.timeout(10):
            while f"job:{job.id}:cancel" in buttons(card(server, interaction)):  # type: ignore[arg-type]
                await asyncio.sleep(0.05)
        assert live_tasks(tmp_path, job.id) == 0  # the simulated provider stopped it
        assert not [m for m in server.messages[server.general] if f"job #{job.id} " in m["content"]]
        RESULTS["after_cancel (guild)"] = "canceled, refunded once, provider task stopped, card final (no Cancel)"
    finally:
        await bot.stop()
