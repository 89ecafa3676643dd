"""One message per job, telling the truth (issue 14 item 2), through the loopback Discord.

For each route (guild channel, the bot's DM, a user install's card, the token-expired DM fallback), for
/compare, a failure and a cancel: at the end the channel holds exactly ONE public message of the job,
carrying the video (or the failure), with no live button but the result's own.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from storage import JobState
from tests.e2e.harness import BotHarness
from tests.e2e.one_message import button_ids, deleted_ids, one_public_message, only_result_buttons, public_messages
from tests.e2e.test_video import is_result, job_ids, video_attachments


@pytest.mark.parametrize("where", ["guild", "dm"])
async def test_the_result_is_posted_with_a_mention_and_the_card_is_deleted(harness: BotHarness, where: str) -> None:
    server = harness.server
    channel = server.general if where == "guild" else server.dm_channel(server.alice)
    ack = await harness.invoke("/kling", user=server.alice, channel=channel, prompt="A heron lands.")
    card_id = str(ack.original_message_id)
    [job_id] = await job_ids(harness, server.alice)
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    result = await one_public_message(server, channel)
    assert result["id"] == str(job.delivered_message_id) != card_id
    assert is_result(job_id)(result) and f"<@{server.alice}>" in result["content"]  # the ping
    assert result["nonce"] == f"job{job_id}" and video_attachments(result)
    assert button_ids(result) == [f"job:{job_id}:rerun", f"job:{job_id}:vary", f"job:{job_id}:sora"]
    assert "Done" in json.dumps(result["embeds"]) and "posting" not in json.dumps(result["embeds"])
    assert card_id in deleted_ids(server, channel)
    assert job.card_message_id == int(card_id)  # recorded with the acknowledgement
    # The result's buttons still work (rerun starts a second job).
    rerun = await harness.click(result, f"job:{job_id}:rerun", user=server.alice)
    assert rerun.response_type == 4


async def test_a_user_install_gets_its_card_edited_into_the_result(harness: BotHarness) -> None:
    """No channel access: no follow-up post at all (it would carry no nonce); the card becomes the result."""
    server = harness.server
    foreign = server.add_guild("Someone else's server", bot_member=False)
    lounge = server.add_channel(foreign, "lounge")
    ack = await harness.invoke("/kling", user=server.bob, channel=lounge, prompt="A dog surfs.")
    assert ack.context == "user_install"
    card = harness.response_message(ack)
    assert "by DM" in json.dumps(card["embeds"])  # said from the start: past the token's life, the DM
    [job_id] = await job_ids(harness, server.bob)
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    result = await one_public_message(server, lounge)
    assert result["id"] == str(ack.original_message_id) == str(job.delivered_message_id)
    assert is_result(job_id)(result) and f"<@{server.bob}>" in result["content"]
    assert video_attachments(result) and only_result_buttons(result) and button_ids(result)
    assert "by DM" not in json.dumps(result["embeds"])
    edits = [event for event in server.channel_log(lounge)
             if event["type"] == "message_update" and event["message"]["id"] == result["id"]]
    assert edits and video_attachments(edits[-1]["message"])  # the loopback recorded the edit with its files
    public_posts = [r for r in server.requests if r.method == "POST" and r.path.startswith("/webhooks/")
                    and not int((r.body or {}).get("flags") or 0) & 64]
    assert public_posts == []  # only the ephemeral receipt went as a follow-up
    assert not deleted_ids(server, lounge)
    # Idempotent: delivering again edits the same card, never a second message.
    assert harness.bot is not None
    again = await harness.bot.delivery.deliver(job)
    assert again.message_id == int(result["id"]) and len(public_messages(server, lounge)) == 1


@pytest.mark.settings(simulated_speed=0.01)
async def test_a_dead_token_without_channel_access_sends_the_video_by_dm(harness: BotHarness, clock) -> None:  # type: ignore[no-untyped-def]
    server = harness.server
    foreign = server.add_guild("Elsewhere", bot_member=False)
    lounge = server.add_channel(foreign, "lounge")
    ack = await harness.invoke("/kling", user=server.bob, channel=lounge, prompt="A slow sunrise.")
    clock.advance(16 * 60)  # Discord's side: the token is now dead
    [job_id] = await job_ids(harness, server.bob)
    dm = server.dm_channel(server.bob)
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    result = await one_public_message(server, dm)
    assert is_result(job_id)(result) and video_attachments(result) and result["nonce"] == f"job{job_id}"
    card = await one_public_message(server, lounge)  # the card, which can no longer be touched, said so
    assert card["id"] == str(ack.original_message_id) and job.delivered_channel_id == dm
    assert "by DM" in json.dumps(card["embeds"])


async def test_a_failure_is_one_notice_and_the_card_goes(harness: BotHarness) -> None:
    server = harness.server
    ack = await harness.invoke("/kling", user=server.alice, channel=server.general,
                               prompt="A storm [fail:content_policy]")
    [job_id] = await job_ids(harness, server.alice)
    await harness.wait_job(job_id, JobState.FAILED)
    notice = await one_public_message(server, server.general)
    assert f"<@{server.alice}> job #{job_id}" in notice["content"] and "failed" in notice["content"]
    assert notice["nonce"] == f"end{job_id}" and button_ids(notice) == []
    assert "Failed" in json.dumps(notice["embeds"])
    assert str(ack.original_message_id) in deleted_ids(server, server.general)


async def test_a_failure_in_a_user_install_becomes_the_card(harness: BotHarness) -> None:
    server = harness.server
    lounge = server.add_channel(server.add_guild("Elsewhere", bot_member=False), "lounge")
    ack = await harness.invoke("/kling", user=server.bob, channel=lounge, prompt="A storm [fail:content_policy]")
    [job_id] = await job_ids(harness, server.bob)
    await harness.wait_job(job_id, JobState.FAILED)
    async with asyncio.timeout(15):
        while "failed" not in harness.response_message(ack)["content"]:
            await asyncio.sleep(0.05)
    notice = await one_public_message(server, lounge)
    assert notice["id"] == str(ack.original_message_id) and button_ids(notice) == []
    assert f"<@{server.bob}> job #{job_id}" in notice["content"] and "by DM" not in json.dumps(notice["embeds"])


async def test_a_cancel_the_owner_pressed_edits_the_card_in_place(harness: BotHarness) -> None:
    server = harness.server
    ack = await harness.invoke("/sora", user=server.alice, channel=server.general, prompt="Slow.", duration=12)
    [job_id] = await job_ids(harness, server.alice)
    await harness.wait_job(job_id, JobState.SUBMITTED, JobState.RUNNING)
    ask = await harness.click(harness.response_message(ack), f"job:{job_id}:cancel", user=server.alice)
    await harness.click(harness.response_message(ask), f"job:{job_id}:stop", user=server.alice)
    await harness.wait_job(job_id, JobState.CANCELED)
    async with asyncio.timeout(15):
        while button_ids(harness.response_message(ack)):
            await asyncio.sleep(0.05)
    card = await one_public_message(server, server.general)
    assert card["id"] == str(ack.original_message_id)
    status = next(f["value"] for f in card["embeds"][0]["fields"] if f["name"] == "Status")
    assert status == f"Canceled by <@{server.alice}> · refunded"
    assert "credits" not in json.dumps(card)  # how much is the owner's business (their ephemeral answer)
    assert not [m for m in server.messages[server.general] if f"job #{job_id} " in m["content"]]


async def test_compare_ends_as_one_message_and_the_shared_card_goes(harness: BotHarness) -> None:
    server = harness.server
    ack = await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="A kite.", blind=True)
    ids = await job_ids(harness, server.alice)
    for job_id in ids:
        await harness.wait_job(job_id, JobState.DELIVERED)
    result = await one_public_message(server, server.general)
    assert "comparison is ready" in result["content"] and len(video_attachments(result)) == 2
    assert only_result_buttons(result) and len(button_ids(result)) == 2  # the two votes
    assert str(ack.original_message_id) in deleted_ids(server, server.general)


async def test_compare_with_a_canceled_half_shows_it_then_ends_as_one_message(harness: BotHarness) -> None:
    server = harness.server
    ack = await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="A kite.",
                               length="long", blind=False)
    assert harness.bot is not None
    jobs = {job.model: job for job in [await harness.bot.store.jobs.get(i) for i in await job_ids(harness, server.alice)]
            if job is not None}
    sora = jobs["sora"]
    await harness.wait_job(sora.id, JobState.SUBMITTED, JobState.RUNNING, JobState.ACCEPTED, JobState.SUBMITTING)
    ask = await harness.click(harness.response_message(ack), f"job:{sora.id}:cancel", user=server.alice)
    await harness.click(harness.response_message(ask), f"job:{sora.id}:stop", user=server.alice)
    await harness.wait_job(jobs["kling"].id, JobState.DELIVERED)
    result = await one_public_message(server, server.general)
    assert "comparison is ready" in result["content"] and len(video_attachments(result)) == 1
    assert "canceled" in json.dumps(result["embeds"]) and only_result_buttons(result)
    card_log = [event["message"] for event in server.channel_log(server.general)
                if event["type"] == "message_update" and event["message"]["id"] == str(ack.original_message_id)]
    assert any("Canceled by" in json.dumps(message["embeds"]) for message in card_log)  # shown until the end
    assert str(ack.original_message_id) in deleted_ids(server, server.general)


@pytest.mark.settings(simulated_speed=0.01)
async def test_after_the_token_died_the_card_is_deleted_through_the_channel(harness: BotHarness, clock) -> None:  # type: ignore[no-untyped-def]
    """Past Discord's 15 minutes the webhook refuses (401); the card's recorded id still reaches it."""
    server = harness.server
    ack = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="A long take.")
    clock.advance(16 * 60)
    [job_id] = await job_ids(harness, server.alice)
    await harness.wait_job(job_id, JobState.DELIVERED)
    result = await one_public_message(server, server.general)
    assert is_result(job_id)(result) and video_attachments(result)
    deletes = [r.path for r in server.requests if r.method == "DELETE"]
    assert f"/channels/{server.general}/messages/{ack.original_message_id}" in deletes
    assert str(ack.original_message_id) in deleted_ids(server, server.general)


async def test_a_compare_whose_halves_both_fail_ends_as_one_notice(harness: BotHarness) -> None:
    server = harness.server
    ack = await harness.invoke("/compare", user=server.alice, channel=server.general,
                               prompt="A kite [fail:content_policy]", blind=True)
    ids = await job_ids(harness, server.alice)
    for job_id in ids:
        await harness.wait_job(job_id, JobState.FAILED)
    notice = await one_public_message(server, server.general)
    assert notice["content"].startswith(f"<@{server.alice}> your comparison #") and "neither clip" in notice["content"]
    assert "Kling" not in json.dumps(notice) and "Sora" not in json.dumps(notice)  # still blind
    assert button_ids(notice) == [] and str(ack.original_message_id) in deleted_ids(server, server.general)


async def test_the_card_edited_into_the_result_fits_the_upload_limit(harness: BotHarness) -> None:
    """The edit route fits the file like a post: re-encoded to the interaction's limit, attached in the edit."""
    server = harness.server
    limit = 100_000  # the simulated 5 s Kling clip at 2 fps is ~150 kB
    lounge = server.add_channel(server.add_guild("Small and foreign", bot_member=False, upload_limit=limit), "lounge")
    ack = await harness.invoke("/kling", user=server.bob, channel=lounge, prompt="A big file.")
    [job_id] = await job_ids(harness, server.bob)
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    result = await one_public_message(server, lounge)
    assert result["id"] == str(ack.original_message_id) and job.result_bytes > limit
    [video] = video_attachments(result)
    assert video["size"] <= limit and "/job show" not in result["content"]
    edits = [r for r in server.requests if r.method == "PATCH" and r.path.endswith("/messages/@original") and r.files]
    assert [r.files for r in edits] == [[f"kling-job{job_id}.mp4"]]  # fitted before the upload: no 413
