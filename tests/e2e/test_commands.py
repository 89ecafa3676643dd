"""Buttons, /compare with votes, credits, jobs and own keys, through the loopback Discord."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot import catalogue
from bot.requests import request_from_json
from storage import JobState, LedgerKind
from tests.e2e.harness import BotHarness
from tests.e2e.one_message import deleted_ids, one_public_message
from tests.e2e.test_video import is_result, job_ids, receipt, video_attachments


def buttons(message: dict[str, Any]) -> list[str]:
    return [c.get("custom_id") or c.get("label") for row in message["components"] for c in row["components"]]


async def finished_kling(harness: BotHarness, user: int, **options: Any) -> tuple[int, dict[str, Any]]:
    server = harness.server
    await harness.invoke("/kling", user=user, channel=server.general, **({"prompt": "A fox."} | options))
    job_id = max(await job_ids(harness, user))
    return job_id, await harness.wait_for_message(server.general, is_result(job_id))


async def test_rerun_variation_and_render_with_sora(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    job_id, result = await finished_kling(harness, server.alice, aspect_ratio="1:1", cfg_scale=0.8,
                                          negative_prompt="blur", duration=10)
    await harness.click(result, f"job:{job_id}:rerun", user=server.alice)
    await harness.click(result, f"job:{job_id}:vary", user=server.alice)
    ids = sorted(await job_ids(harness, server.alice))
    rerun, variation = (await bot.store.jobs.get(ids[1]), await bot.store.jobs.get(ids[2]))
    assert rerun and variation and rerun.parent_job_id == variation.parent_job_id == job_id
    original = request_from_json("kling", (await bot.store.jobs.get(job_id)).request_json)  # type: ignore[union-attr]
    assert request_from_json("kling", rerun.request_json) == original
    varied = request_from_json("kling", variation.request_json)
    assert varied.seed is not None and varied.model_copy(update={"seed": None}) == original
    for child in ids[1:]:
        await harness.wait_job(child, JobState.DELIVERED)
    sora = await harness.click(result, f"job:{job_id}:sora", user=server.alice)
    embed = harness.response_message(sora)["embeds"][0]
    assert "Sora 2" in embed["title"]
    note = next(f["value"] for f in embed["fields"] if f["name"] == "Note")
    assert "no square" in note and "CFG scale or negative prompt" in note
    sora_job = await bot.store.jobs.get(max(await job_ids(harness, server.alice)))
    assert sora_job is not None and sora_job.model == "sora"
    carried = request_from_json("sora", sora_job.request_json)
    assert carried.prompt == original.prompt and carried.duration == 12 and carried.orientation == "landscape"


async def test_cancel_button_refunds_and_refuses_strangers(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    ack = await harness.invoke("/sora", user=server.alice, channel=server.general, prompt="Slow.", duration=12)
    [job_id] = await job_ids(harness, server.alice)
    message = harness.response_message(ack)
    assert f"job:{job_id}:cancel" in buttons(message)
    stranger = await harness.click(message, f"job:{job_id}:cancel", user=server.bob)
    assert "Only the person who started" in harness.ephemeral_text(stranger)
    await harness.wait_job(job_id, JobState.SUBMITTED, JobState.RUNNING)
    ask = await harness.click(message, f"job:{job_id}:cancel", user=server.alice)
    assert "all 48 credits come back" in harness.ephemeral_text(ask)  # the simulated provider can stop it
    assert (await bot.store.jobs.get(job_id)).state.active  # type: ignore[union-attr]  # nothing happened yet
    confirm_message = harness.response_message(ask)
    hijack = await harness.click(confirm_message, f"job:{job_id}:stop", user=server.bob)
    assert "Only the person who started" in harness.ephemeral_text(hijack)
    owner = await harness.click(confirm_message, f"job:{job_id}:stop", user=server.alice)
    assert "canceled" in harness.ephemeral_text(owner) and "48 credits refunded" in harness.ephemeral_text(owner)
    job = await bot.store.jobs.get(job_id)
    assert job is not None and job.state is JobState.CANCELED
    kinds = [e.kind for e in await bot.store.ledger.entries_for_job(job_id)]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.REFUND]
    assert await bot.store.ledger.balance(server.alice) == 120
    async with asyncio.timeout(10):  # the card loses its live Cancel button (outbox)
        while f"job:{job_id}:cancel" in buttons(harness.response_message(ack)):
            await asyncio.sleep(0.05)


async def test_compare_posts_one_message_with_both_videos_and_records_votes(harness: BotHarness) -> None:
    """The open compare; the blind one has its own tests in test_blind_compare.py."""
    blind = False
    server, bot = harness.server, harness.bot
    assert bot is not None
    ack = await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="A lighthouse in fog.",
                               length="short", orientation="portrait", blind=blind)
    assert len(harness.response_message(ack)["embeds"]) == 2
    jobs = [await bot.store.jobs.get(i) for i in await job_ids(harness, server.alice)]
    assert sorted(j.model for j in jobs if j) == ["kling", "sora"]
    assert await bot.store.ledger.balance(server.alice) == 120 - 10 - 16
    result = await harness.wait_for_message(server.general, lambda m: "comparison is ready" in m["content"])
    videos = video_attachments(result)
    assert len(videos) == 2
    names = sorted(v["filename"] for v in videos)
    fields = " ".join(f["name"] + f["value"] for f in result["embeds"][0]["fields"])
    if blind:
        assert names == ["A.mp4", "B.mp4"] and "Kling" not in fields and "Sora" not in fields
    else:
        assert names == ["A-kling.mp4", "B-sora.mp4"] and "Kling 2.0" in fields and "Sora 2" in fields
    for job in jobs:
        assert job is not None
        await harness.wait_job(job.id, JobState.DELIVERED)
    assert sum(1 for m in server.messages[server.general] if "comparison is ready" in m["content"]) == 1
    shown = [e["message"] for e in server.channel_log(server.general)  # the shared card, as it was shown
             if e["type"] != "message_delete" and e["message"]["id"] == str(ack.original_message_id)]
    assert [e["title"].split(" · ")[0] for e in shown[-1]["embeds"]] == ["Kling 2.0", "Sora 2"]
    assert (await one_public_message(server, server.general))["id"] == result["id"]  # the card went with the post
    assert str(ack.original_message_id) in deleted_ids(server, server.general)
    compare_id = jobs[0].compare_id  # type: ignore[union-attr]
    vote = await harness.click(result, f"cmp:{compare_id}:vote:a", user=server.bob)
    text = harness.ephemeral_text(vote)
    assert "Vote recorded" in text
    assert ("A was" in text) is blind
    changed = await harness.click(result, f"cmp:{compare_id}:vote:b", user=server.bob)
    assert "Vote changed" in harness.ephemeral_text(changed)
    compare = await bot.store.jobs.get_compare(compare_id)  # type: ignore[arg-type]
    stats = await bot.store.jobs.vote_stats()
    assert stats[compare.model_in("b")] == 1 and sum(stats.values()) == 1  # type: ignore[union-attr]
    shown = await harness.invoke("/compare-stats", user=server.alice, channel=server.general)
    assert "1 votes" in str(harness.response_message(shown)["embeds"])


async def test_credits_and_admin_grants(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    mine = await harness.invoke("/credits", user=server.alice, channel=server.general)
    embed = harness.response_message(mine)["embeds"][0]
    assert "**120** credits" in embed["description"] and "`kling-2.0`): 5 s: 10, 10 s: 20" in str(embed["fields"])
    refused = await harness.invoke("/credits-grant", user=server.bob, channel=server.general,
                                   options={"user": server.bob, "amount": 1000})
    assert "Only the bot's operators" in harness.ephemeral_text(refused)
    granted = await harness.invoke("/credits-grant", user=server.admin, channel=server.general,
                                   options={"user": server.alice, "amount": 50, "reason": "contest prize"})
    assert "balance now 170" in harness.ephemeral_text(granted)
    [entry] = [e for e in await bot.store.ledger.history(server.alice) if e.kind is LedgerKind.ADJUST]
    assert entry.actor_id == server.admin and entry.amount == 50
    priced = await harness.invoke("/credits-set-price", user=server.admin, channel=server.general,
                                  option="kling-2.0", credits=3)
    assert "`kling-2.0`): 5 s: 15, 10 s: 30" in harness.ephemeral_text(priced)
    ack = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Priced.")
    assert "Charged 15 credits" in await receipt(harness, ack)
    # Prices are per model: another model's override leaves Kling 2.0 alone and charges that model's.
    await harness.invoke("/credits-set-price", user=server.admin, channel=server.general,
                         option="kling-2.6", credits=7)
    other = await harness.invoke("/kling", user=server.bob, channel=server.general, prompt="Other.",
                                 model="kling-2.6", duration=10)
    assert "Charged 70 credits" in await receipt(harness, other)


async def test_jobs_list_show_and_cancel_are_private(harness: BotHarness) -> None:
    server = harness.server
    job_id, _ = await finished_kling(harness, server.alice)
    listed = await harness.invoke("/jobs", user=server.alice, channel=server.general)
    assert f"#{job_id}" in harness.ephemeral_text(listed)
    shown = await harness.invoke("/job show", user=server.alice, channel=server.general, id=job_id)
    assert video_attachments(harness.response_message(shown))
    peek = await harness.invoke("/job show", user=server.bob, channel=server.general, id=job_id)
    assert f"You have no job #{job_id}" in harness.ephemeral_text(peek)
    meddle = await harness.invoke("/job cancel", user=server.bob, channel=server.general, id=job_id)
    assert f"You have no job #{job_id}" in harness.ephemeral_text(meddle)
    late = await harness.invoke("/job cancel", user=server.alice, channel=server.general, id=job_id)
    assert "already delivered" in harness.ephemeral_text(late)


async def test_own_openai_key_is_encrypted_and_bills_no_credits(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    key = "sk-test-" + "k" * 40
    opened = await harness.invoke("/openai-key set", user=server.alice, channel=server.general)
    assert opened.response_type == 9 and opened.modal is not None
    field = opened.modal["components"][0]["components"][0]["custom_id"]
    submitted = await server.submit_modal(opened.modal["custom_id"], {field: key}, user=server.alice,
                                          channel=server.general)
    await submitted.wait_response()
    await harness.wait_for_message(server.general, lambda m: "Key stored" in m["content"])
    raw = bot.settings.database_path.read_bytes() + b"".join(
        p.read_bytes() for p in bot.settings.database_path.parent.glob("*.sqlite3-wal"))
    assert key.encode() not in raw
    assert key not in json.dumps([r.body for r in server.requests], default=str)
    status = await harness.invoke("/openai-key status", user=server.alice, channel=server.general)
    assert "A key is stored" in harness.ephemeral_text(status) and key not in harness.ephemeral_text(status)
    await harness.invoke("/sora", user=server.alice, channel=server.general, prompt="On my bill.", use_own_key=True)
    [job_id] = await job_ids(harness, server.alice)
    await harness.wait_job(job_id, JobState.DELIVERED)
    assert await bot.store.ledger.entries_for_job(job_id) == []
    assert await bot.store.ledger.balance(server.alice) == 120
    removed = await harness.invoke("/openai-key remove", user=server.alice, channel=server.general)
    assert "Key deleted" in harness.ephemeral_text(removed)


async def test_help_and_models_explain_the_choice(harness: BotHarness) -> None:
    server = harness.server
    shown = await harness.invoke("/models", user=server.alice, channel=server.general)
    text = json.dumps(harness.response_message(shown)["embeds"])
    embed = harness.response_message(shown)["embeds"][0]
    # The table is the catalogue: one row per enabled model (disabled ones are not shown), with its tips.
    rows = [line for line in embed["description"].splitlines() if line and not line.startswith(("```", "*"))]
    books = catalogue.current()
    assert [row.split("  ")[0].removesuffix(" *") for row in rows[1:]] == [s.label for s in books.enabled()]
    assert "Kling 2.1" not in text
    assert all(spec.tips[:40] in text for spec in books.enabled())
    assert "Sora 2 Pro high (`sora-2-pro:high`): 4 s: 40, 8 s: 80, 12 s: 120 credits" in text
    helped = await harness.invoke("/help", user=server.alice, channel=server.general)
    assert "/compare" in json.dumps(harness.response_message(helped)["embeds"])


@pytest.mark.settings(simulated_speed=0.01)
async def test_progress_edits_are_coalesced(harness: BotHarness) -> None:
    """Many polls, but the original response is edited at most once per 10 s (plus the final edit)."""
    server = harness.server
    ack = await harness.invoke("/sora", user=server.alice, channel=server.general, prompt="Waves.", duration=8)
    [job_id] = await job_ids(harness, server.alice)
    await harness.wait_job(job_id, JobState.DELIVERED)
    polls = harness.bot.poller.iterations if harness.bot else 0
    edits = [r for r in server.requests if r.method == "PATCH" and "/webhooks/" in r.path]
    assert polls > 3
    assert 1 <= len(edits) <= 2
    # The card's end is its deletion: the result, posted with the owner's mention, is the job's one message.
    result = await one_public_message(server, server.general)
    assert is_result(job_id)(result) and str(ack.original_message_id) in deleted_ids(server, server.general)


@pytest.mark.settings(poll_time_scale=0.01)
async def test_compare_card_retirement_refused_by_discord_is_retried(harness: BotHarness) -> None:
    """Rate limits that outlast discord.py's own five tries: the outbox tries the shared card's retirement
    again, so a pair whose halves both failed ends as ONE notice (both reasons) and no card is left with a
    live Cancel button."""
    server, bot = harness.server, harness.bot
    assert bot is not None
    server.inject(r"/messages/@original$", status=429, times=10, retry_after=0.05, method="DELETE")
    ack = await harness.invoke("/compare", user=server.alice, channel=server.general,
                               prompt="A lighthouse in fog. [fail:invalid_request]")
    ids = await job_ids(harness, server.alice)
    assert len(ids) == 2
    for job_id in ids:
        await harness.wait_job(job_id, JobState.FAILED)

    async def owed() -> list[dict[str, Any]]:
        return [row for job_id in ids for row in await bot.store.jobs.outbox_for_job(job_id)]

    async with asyncio.timeout(30):
        while any(row["done_at"] is None for row in await owed()):
            await asyncio.sleep(0.05)
    rows = await owed()
    assert len(rows) == 2 and len({row["message_id"] for row in rows} - {None}) == 1  # one notice for the pair
    assert any(row["attempts"] >= 1 for row in rows)  # the card's deletion was refused, and tried again
    deletes = [r for r in server.requests if r.method == "DELETE" and r.path.endswith("/messages/@original")]
    assert len(deletes) > 10  # past the injected refusals
    notice = await one_public_message(server, server.general)
    assert not notice["components"] and json.dumps(notice["embeds"]).count("Why") == 2
    assert str(ack.original_message_id) in deleted_ids(server, server.general)
