"""The buttons' persistence contract: a message posted by an earlier version of the bot (Discord keeps only its
custom_ids) still works after an upgrade and a restart; and posting cards keeps no view in the bot's memory."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.requests import request_from_json
from bot.sandbox.discord import LoopbackDiscord
from storage import JobState, LedgerKind
from tests.e2e.harness import BotHarness
from tests.e2e.test_video import is_result, job_ids, video_attachments


def posted_before_the_upgrade(server: LoopbackDiscord, custom_ids: list[str]) -> dict[str, Any]:
    """A bot message with buttons as the previous version posted them, written straight into the loopback
    Discord: nothing of today's code builds it, so only the custom_id format connects it to the bot."""
    rows = [{"type": 1, "components": [{"type": 2, "style": 2, "label": custom_id, "custom_id": custom_id}
                                       for custom_id in custom_ids[start:start + 5]]}
            for start in range(0, len(custom_ids), 5)]
    return server.new_message(server.general, {"content": "A card from before the upgrade.", "components": rows},
                              [], limit=server.upload_limit(server.guild), author=server.bot_user)


async def new_job(harness: BotHarness, user: int, known: set[int]) -> int:
    """The id of the user's job created since `known` was taken (exactly one)."""
    async with asyncio.timeout(10):
        while not (fresh := set(await job_ids(harness, user)) - known):
            await asyncio.sleep(0.02)
    [job_id] = fresh
    return job_id


async def test_result_buttons_posted_before_an_upgrade_work_after_a_restart(harness: BotHarness) -> None:
    server = harness.server
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="A fox in the snow.")
    [job_id] = await job_ids(harness, server.alice)
    await harness.wait_for_message(server.general, is_result(job_id))
    old = posted_before_the_upgrade(server, [f"job:{job_id}:rerun", f"job:{job_id}:vary", f"job:{job_id}:sora",
                                             f"job:{job_id}:show"])
    bot = await harness.restart()  # the new version: nothing of the old process is in memory
    original = await bot.store.jobs.get(job_id)
    assert original is not None

    known = set(await job_ids(harness, server.alice))
    rerun = await harness.click(old, f"job:{job_id}:rerun", user=server.alice)
    assert rerun.error is None
    rerun_id = await new_job(harness, server.alice, known)
    rerun_job = await bot.store.jobs.get(rerun_id)
    assert rerun_job is not None and rerun_job.parent_job_id == job_id
    assert rerun_job.request_json == original.request_json
    await harness.wait_job(rerun_id, JobState.DELIVERED)

    known.add(rerun_id)
    await harness.click(old, f"job:{job_id}:vary", user=server.alice)
    vary_id = await new_job(harness, server.alice, known)
    varied = await bot.store.jobs.get(vary_id)
    assert varied is not None and varied.parent_job_id == job_id
    assert request_from_json("kling", varied.request_json).seed is not None
    await harness.wait_job(vary_id, JobState.DELIVERED)

    known.add(vary_id)
    await harness.click(old, f"job:{job_id}:sora", user=server.alice)
    sora_id = await new_job(harness, server.alice, known)
    sora = await bot.store.jobs.get(sora_id)
    assert sora is not None and sora.model == "sora" and sora.parent_job_id == job_id
    await harness.wait_job(sora_id, JobState.DELIVERED)

    show = await harness.click(old, f"job:{job_id}:show", user=server.alice)
    shown = harness.response_message(show)
    assert shown["flags"] & 64 and [v["filename"] for v in video_attachments(shown)] == [f"kling-job{job_id}.mp4"]
    stranger = await harness.click(old, f"job:{job_id}:show", user=server.bob)
    assert f"You have no job #{job_id}" in harness.ephemeral_text(stranger)
    assert set(await job_ids(harness, server.alice)) == known | {sora_id}  # "show" started nothing
    # Every card above was posted with buttons, yet the bot keeps no view per message in memory.
    assert bot.persistent_views == []


async def test_cancel_and_vote_buttons_posted_before_an_upgrade_work_after_a_restart(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="A lighthouse in fog.")
    compared = await job_ids(harness, server.alice)
    for job_id in compared:
        await harness.wait_job(job_id, JobState.DELIVERED)
    compare_id = (await bot.store.jobs.get(compared[0])).compare_id  # type: ignore[union-attr]
    assert compare_id is not None
    await harness.invoke("/sora", user=server.alice, channel=server.general, prompt="Slow.", duration=12)
    job_id = await new_job(harness, server.alice, set(compared))
    await harness.wait_job(job_id, JobState.SUBMITTED, JobState.RUNNING)
    old = posted_before_the_upgrade(server, [f"cmp:{compare_id}:vote:a", f"cmp:{compare_id}:vote:b",
                                             f"job:{job_id}:cancel", f"job:{job_id}:stop"])
    bot = await harness.restart()

    vote = await harness.click(old, f"cmp:{compare_id}:vote:b", user=server.bob)
    assert "Vote recorded" in harness.ephemeral_text(vote)
    compare = await bot.store.jobs.get_compare(compare_id)
    assert compare is not None
    stats = await bot.store.jobs.vote_stats()
    assert stats[compare.model_in("b")] == 1 and sum(stats.values()) == 1

    ask = await harness.click(old, f"job:{job_id}:cancel", user=server.alice)
    assert "all 48 credits come back" in harness.ephemeral_text(ask)
    assert f"job:{job_id}:stop" in str(harness.response_message(ask)["components"])
    assert (await bot.store.jobs.get(job_id)).state.active  # type: ignore[union-attr]  # asked, not done
    hijack = await harness.click(old, f"job:{job_id}:stop", user=server.bob)
    assert "Only the person who started" in harness.ephemeral_text(hijack)
    stop = await harness.click(old, f"job:{job_id}:stop", user=server.alice)
    assert "48 credits refunded" in harness.ephemeral_text(stop)
    job = await bot.store.jobs.get(job_id)
    assert job is not None and job.state is JobState.CANCELED
    assert [e.kind for e in await bot.store.ledger.entries_for_job(job_id)] == [LedgerKind.RESERVE, LedgerKind.REFUND]
