"""Issue #14.3: balances, charges and key state never reach a public message; public text names who pressed.

Every version of every message the loopback Discord saw (its event log keeps a snapshot of each create
and edit) is read, not only the final ones, so a card that showed a balance for a moment is caught.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

import pytest
from PIL import Image

from bot.sandbox.discord import Interaction
from storage import JobState
from tests.e2e.harness import BotHarness
from tests.e2e.test_video import is_result, job_ids, receipt

PRIVATE = re.compile(r"balance|charged to you|your openai key|own key|credits? left", re.IGNORECASE)


def public_versions(harness: BotHarness, channel: int) -> list[dict[str, Any]]:
    """Every created or edited version of every non-ephemeral message in `channel`."""
    return [event["message"] for event in harness.server.channel_log(channel)
            if event["type"] in ("message_create", "message_update")
            and not int(event["message"].get("flags") or 0) & 64]


def shown_text(message: dict[str, Any]) -> str:
    """What a reader sees: content, embeds (titles, fields, footers), buttons and file names."""
    return json.dumps([message["content"], message["embeds"], message["components"],
                       [a["filename"] for a in message["attachments"]]], ensure_ascii=False)


def assert_nothing_private(harness: BotHarness, channel: int, balances: list[int]) -> list[dict[str, Any]]:
    versions = public_versions(harness, channel)
    assert versions, "no public message was seen at all"
    for message in versions:
        text = shown_text(message)
        assert not PRIVATE.search(text), text
        for amount in balances:  # the number itself, in any wording ("104 credits", "balance 104")
            assert f" {amount} credits" not in text and f"**{amount}**" not in text, (amount, text)
    return versions


def no_ping(message: dict[str, Any]) -> bool:
    mentions = message.get("allowed_mentions") or {}
    return mentions.get("parse") == [] and not mentions.get("users") and not mentions.get("roles")


def field(message: dict[str, Any], name: str, index: int = 0) -> str:
    return next(f["value"] for f in message["embeds"][index]["fields"] if f["name"] == name)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (0, 0, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


async def card_of(harness: BotHarness, interaction: Interaction) -> dict[str, Any]:
    message = harness.response_message(interaction)
    assert not message["flags"] & 64, "the card is public"
    return message


async def test_a_jobs_whole_life_in_a_channel_shows_no_balance_and_names_who_pressed(harness: BotHarness) -> None:
    """Card, progress edits, result, a rerun by someone else (card and result) and a compare."""
    server, bot = harness.server, harness.bot
    assert bot is not None
    ack = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="A fox in snow.",
                               attachments={"image": ("start.png", png(), "image/png")})
    [job_id] = await job_ids(harness, server.alice)
    card = await card_of(harness, ack)
    assert field(card, "By") == f"<@{server.alice}>" and no_ping(card)
    assert field(card, "Options").endswith("first frame")
    # The balance is still told, privately, to the one who pays.
    assert await receipt(harness, ack) == f"Charged 10 credits for video #{job_id}; your balance is now 110 credits."

    result = await harness.wait_for_message(server.general, is_result(job_id))
    assert field(result, "Options").endswith("first frame"), "the result keeps the first-frame tag"
    assert field(result, "By") == f"<@{server.alice}>"

    rerun = await harness.click(result, f"job:{job_id}:rerun", user=server.bob)
    rerun_id = max(await job_ids(harness, server.bob))
    rerun_card = await card_of(harness, rerun)
    assert field(rerun_card, "By") == f"<@{server.bob}>", "the card names who pressed, not the original author"
    note = field(rerun_card, "Note")
    assert f"<@{server.bob}>" in note and "pays" in note and "Charged to you" not in note
    assert no_ping(rerun_card)
    assert field(rerun_card, "Options").endswith("first frame"), "a rerun reuses the first frame"
    bob_receipt = await receipt(harness, rerun)
    assert f"Charged 10 credits for video #{rerun_id}; your balance is now 110 credits." in bob_receipt
    assert "not the author of the original job" in bob_receipt
    rerun_result = await harness.wait_for_message(server.general, is_result(rerun_id))
    assert field(rerun_result, "By") == f"<@{server.bob}>" and f"<@{server.bob}>" in rerun_result["content"]

    compared = await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="A kite.")
    compare_card = await card_of(harness, compared)
    assert [field(compare_card, "By", i) for i in (0, 1)] == [f"<@{server.alice}>"] * 2
    assert "Charged 26 credits" in await receipt(harness, compared)
    await harness.wait_for_message(server.general, lambda m: "comparison is ready" in m["content"])
    for job in await job_ids(harness, server.alice):
        await harness.wait_job(job, JobState.DELIVERED)

    versions = assert_nothing_private(harness, server.general, balances=[120, 110, 84])
    assert len(versions) >= 6  # three cards (and any progress edits) and their three results were all read
    # Sanity: the private receipts do hold the numbers the public scan looks for.
    receipts = [m for m in server.messages[server.general] if m["flags"] & 64 and "balance" in m["content"]]
    assert len(receipts) == 3 and any("84 credits" in m["content"] for m in receipts)


async def test_own_key_jobs_and_failures_keep_key_state_private(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    opened = await harness.invoke("/openai-key set", user=server.alice, channel=server.general)
    assert opened.modal is not None
    key_field = opened.modal["components"][0]["components"][0]["custom_id"]
    submitted = await server.submit_modal(opened.modal["custom_id"], {key_field: "sk-test-" + "k" * 40},
                                          user=server.alice, channel=server.general)
    await submitted.wait_response()
    ack = await harness.invoke("/sora", user=server.alice, channel=server.general, prompt="[fail:auth] On my bill.",
                               use_own_key=True)
    [job_id] = await job_ids(harness, server.alice)
    assert (await receipt(harness, ack)).startswith(f"Billed to your OpenAI key: no credits charged for video #{job_id}")
    notice = await harness.wait_for_message(server.general, lambda m: f"job #{job_id}" in m["content"]
                                            and "failed" in m["content"])
    assert f"/job show {job_id}" in notice["content"]
    await harness.wait_job(job_id, JobState.FAILED)
    assert_nothing_private(harness, server.general, balances=[120])
    shown = await harness.invoke("/job show", user=server.alice, channel=server.general, id=job_id)
    private = harness.response_message(shown)
    assert private["flags"] & 64
    assert field(private, "Cost") == "0 credits (your OpenAI key)" and "your OpenAI key was rejected" in \
        field(private, "Why")


@pytest.mark.parametrize("where", ["dm", "user_install"])
async def test_dms_and_user_installs_get_the_same_public_card_and_private_receipt(harness: BotHarness,
                                                                                  where: str) -> None:
    server = harness.server
    if where == "dm":
        channel = server.dm_channel(server.bob)
    else:
        channel = server.add_channel(server.add_guild("Friends", bot_member=False), "hangout")
    ack = await harness.invoke("/kling", user=server.bob, channel=channel, prompt="A dog surfs.")
    [job_id] = await job_ids(harness, server.bob)
    card = await card_of(harness, ack)
    assert field(card, "By") == f"<@{server.bob}>"
    assert await receipt(harness, ack) == f"Charged 10 credits for video #{job_id}; your balance is now 110 credits."
    await harness.wait_for_message(channel, is_result(job_id))
    assert_nothing_private(harness, channel, balances=[120, 110])


@pytest.mark.settings(simulated_speed=1.0)  # retries seconds apart, so the job is seen waiting, not given up
async def test_a_job_retrying_after_429s_says_so_and_when(harness: BotHarness) -> None:
    """`[fail:rate_limited]` makes the simulated provider answer 429 with Retry-After; the job waits."""
    server, bot = harness.server, harness.bot
    assert bot is not None
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="[fail:rate_limited] A fox.")
    [job_id] = await job_ids(harness, server.alice)
    async with asyncio.timeout(20):
        while (job := await bot.store.jobs.get(job_id)) is None or not job.attempts:
            await asyncio.sleep(0.02)
    assert job.state in (JobState.ACCEPTED, JobState.SUBMITTING) and job.error_code == "rate_limited" and job.next_run_at is not None
    shown = await harness.invoke("/job show", user=server.alice, channel=server.general, id=job_id)
    status = field(harness.response_message(shown), "Status")
    assert re.fullmatch(r"Retrying at <t:\d+:T> \(provider busy\)", status), status
    listed = await harness.invoke("/jobs", user=server.alice, channel=server.general)
    assert "Retrying at <t:" in harness.ephemeral_text(listed) and "Queued" not in harness.ephemeral_text(listed)
