"""Hostile input through the loopback Discord: invisible prompts, 40-megapixel images, live markup."""

from __future__ import annotations

import json

from storage import JobState
from tests.bot.test_images import declared_png
from tests.e2e.harness import BotHarness
from tests.e2e.test_video import is_result, job_ids


async def test_prompt_of_invisible_characters_is_refused_and_free(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    before = await bot.store.ledger.balance(server.alice)
    for command in ("/kling", "/sora", "/compare"):
        interaction = await harness.invoke(command, user=server.alice, channel=server.general,
                                           prompt="\u200b\u200d\u2060\ufeff\u202e\x00")
        assert "Write a prompt" in harness.ephemeral_text(interaction)
    assert await job_ids(harness, server.alice) == []
    assert await bot.store.ledger.balance(server.alice) == before


async def test_40_megapixel_image_is_refused_from_discords_metadata(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    before = await bot.store.ledger.balance(server.alice)
    bomb = declared_png(8000, 5000)
    assert len(bomb) < 200 * 1024
    interaction = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="x",
                                       attachments={"image": ("bomb.png", bomb, "image/png")})
    sent = list(interaction.payload["data"]["resolved"]["attachments"].values())
    assert (sent[0]["width"], sent[0]["height"]) == (8000, 5000)  # what real Discord sends too
    assert "megapixels" in harness.ephemeral_text(interaction)
    assert await job_ids(harness, server.alice) == []
    assert await bot.store.ledger.balance(server.alice) == before
    # The attachment was never fetched: the refusal came from the metadata alone.
    assert not [r for r in server.requests if r.path.startswith("/attachments/")]


async def test_prompt_markup_stays_text_and_pings_nobody(harness: BotHarness) -> None:
    server = harness.server
    prompt = (f"@everyone <@{server.bob}> [free nitro](https://evil.example) [two](https://b.example)\n\n"
              "-# tiny\n# Big ||spoiler||")
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt=prompt)
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(server.general, is_result(job_id))
    await harness.wait_job(job_id, JobState.DELIVERED)
    shown = json.dumps(result["embeds"]) + json.dumps(harness.server.messages[server.general])
    for live in ("[free nitro](", "](https://", "\\n-# ", "\\n# ", "||spoiler", f"<@{server.bob}>"):
        assert live not in shown, live
    bodies = [r.body for r in server.requests
              if r.method in ("POST", "PATCH") and isinstance(r.body, dict)
              and ("content" in r.body or "embeds" in r.body or "data" in r.body)]
    assert bodies
    for body in bodies:
        body = body.get("data", body) if isinstance(body.get("data"), dict) else body
        mentions = body.get("allowed_mentions")
        assert mentions is not None, body
        assert "everyone" not in mentions.get("parse", []) and "roles" not in mentions.get("parse", [])
        assert "users" not in mentions.get("parse", [])
        assert {int(user) for user in mentions.get("users", [])} <= {server.alice}
