"""Discord faults, bursts of concurrent commands, and hostile input through the real bot."""

from __future__ import annotations

import asyncio
import json
import random
import re

import pytest

from bot import ui
from storage import JobState
from tests.e2e.harness import BotHarness
from tests.e2e.one_message import one_public_message
from tests.e2e.test_video import is_result, job_ids, video_attachments


@pytest.mark.settings(poll_time_scale=0.01)
async def test_discord_5xx_on_delivery_is_retried(harness: BotHarness) -> None:
    server = harness.server
    server.inject(rf"^/channels/{server.general}/messages$", status=503, times=3, method="POST")
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Try, try again.")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(server.general, is_result(job_id))
    assert video_attachments(result)
    posts = [r for r in server.requests if r.method == "POST" and r.path == f"/channels/{server.general}/messages"]
    assert len(posts) == 4
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    assert job.attempts >= 1


async def test_channel_without_attach_permission_gets_the_card_edited_into_the_result(harness: BotHarness) -> None:
    server = harness.server
    quiet = server.add_channel(server.guild, "no-files", bot_can_attach=False)
    await server.broadcast("CHANNEL_CREATE", server.channel_payload(quiet))
    interaction = await harness.invoke("/kling", user=server.alice, channel=quiet, prompt="Where to?")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(quiet, is_result(job_id))
    # The channel post was refused; the interaction's webhook may attach, so the card became the result.
    assert int(result["id"]) == interaction.original_message_id and video_attachments(result)
    assert (await one_public_message(server, quiet))["id"] == result["id"]


@pytest.mark.settings(simulated_speed=0.01)
async def test_gateway_drop_during_a_job(harness: BotHarness) -> None:
    server = harness.server
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Hold the line.")
    [job_id] = await job_ids(harness, server.alice)
    await server.drop_connections()
    result = await harness.wait_for_message(server.general, is_result(job_id))
    assert video_attachments(result)
    async with asyncio.timeout(20):
        await server.identified.wait()
    pong = await harness.invoke("/ping", user=server.bob, channel=server.general)
    assert "Pong" in harness.ephemeral_text(pong)


@pytest.mark.settings(start_balance=50, daily_grant=0, max_concurrent_jobs=100, simulated_fps=1)
async def test_burst_of_commands_and_grants_keeps_the_ledger_exact(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    users = [server.add_user(f"user{n}") for n in range(20)]
    for user in users:
        server.guilds[server.guild].members.add(user)
    invocations = [server.invoke("/kling", user=user, channel=server.general, options={"prompt": f"burst {n}"})
                   for n in range(10) for user in users]
    grants = [server.invoke("/credits-grant", user=server.admin, channel=server.general,
                            options={"user": user, "amount": 10}) for user in users[:10]]
    fired = await asyncio.gather(*invocations, *grants)
    async with asyncio.timeout(60):
        for interaction in fired:
            await interaction.wait_response()
    late = [i for i in fired if i.error]
    accepted = [i for i in fired[:200] if not harness.response_message(i)["flags"] & 64]
    refused = [i for i in fired[:200] if harness.response_message(i)["flags"] & 64]
    async with asyncio.timeout(120):
        while True:
            counts = await bot.store.jobs.count_by_state()
            if not any(state.active or state is JobState.DOWNLOADED for state in counts):
                break
            await asyncio.sleep(0.2)
    audit = await bot.store.ledger.audit()
    balances = [await bot.store.ledger.balance(user) for user in users]
    print(f"\nburst: {len(fired)} interactions, {len(accepted)} jobs accepted, {len(refused)} refused "
          f"(short of credits), {len(late)} acks late; final states {dict(counts)}; audit {audit}")
    assert late == []
    assert audit == {"balance_mismatch": 0, "negative_balance": 0, "unsettled_finished_jobs": 0,
                     "duplicate_entries": 0}
    assert min(balances) >= 0
    # 50 credits buy five 10-credit jobs; a grant of 10 may buy one more if it landed in time.
    assert 100 <= len(accepted) <= 110
    assert sum(balances) == 20 * 50 + 10 * 10 - 10 * len(accepted)


NASTY = [
    "@everyone look at this", "@here <@&123> <@1> ping", "**bold** __under__ ~~strike~~ `code` ||spoiler||",
    "[link](https://evil.example) https://x.example", "\u202eevil RTL override\u202c", "zero\u200bwidth\u200djoin",
    "emoji 🎬🦊" * 50, "<script>alert(1)</script>", "line\n" * 40, "x" * 2500, "ﷺ" * 300,
    "\x00\x01 control", "${jndi:ldap://x}", "'; DROP TABLE jobs; --", "y" * 6000,
]


async def test_hostile_prompts_are_echoed_inertly(harness: BotHarness) -> None:
    server = harness.server
    rng = random.Random(7)
    samples = NASTY + ["".join(rng.choice(NASTY)[:40] for _ in range(rng.randint(1, 8))) for _ in range(16)]
    tried = 0
    for prompt in samples:
        interaction = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt=prompt)
        tried += 1
        assert interaction.error is None
        message = harness.response_message(interaction)
        if message["flags"] & 64:
            continue  # refused (too long, blank after stripping...) with an explanation
        embed = message["embeds"][0]
        assert "@everyone" not in embed["description"].replace("\\@everyone", "")
        assert not re.search(r"(?<!\\)\[[^\]]*\]\(", embed["description"])  # no live masked links
        assert len(json.dumps(embed)) < 8000
        jobs = await job_ids(harness, server.alice)
        for job_id in jobs:
            await harness.job_settled(job_id)
    posted = [m for m in server.all_messages() if m.get("allowed_mentions") is not None]
    assert all(m["allowed_mentions"].get("parse") == [] for m in posted)
    huge = await harness.invoke("/kling", user=server.bob, channel=server.general, prompt="big picture",
                                attachments={"image": ("big.png", b"\x89PNG" + b"0" * (21 * 1024 * 1024), "image/png")})
    assert "too large" in harness.ephemeral_text(huge)
    tried += 1
    print(f"\nhostile input: {tried} inputs tried; no mention could ping, every echo escaped")
    assert ui.quote("@everyone") == "\\@everyone"  # escaped: shown as text, never a mention
