"""/kling, /sora and /compare end to end: charge, render, deliver, buttons, refunds."""

from __future__ import annotations

import io
from typing import Any

import av
import pytest
from PIL import Image

from bot.sandbox.discord import Interaction
from storage import JobState, LedgerKind
from tests.e2e.harness import BotHarness


def video_attachments(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in message["attachments"] if a["filename"].endswith(".mp4")]


async def receipt(harness: BotHarness, interaction: Interaction) -> str:
    """The ephemeral charge receipt that follows a job's public card (the only place with the balance)."""
    [message_id] = await interaction.wait_followups(1)
    [message] = [m for m in harness.server.all_messages() if m["id"] == str(message_id)]
    assert message["flags"] & 64, "the receipt must be ephemeral"
    return str(message["content"])


def is_result(job_id: int) -> Any:
    return lambda m: f"job #{job_id})" in m["content"] and "ready" in m["content"]


async def download(harness: BotHarness, attachment: dict[str, Any]) -> bytes:
    stored = harness.server.files[int(attachment["id"])]
    return stored[0]


def probe(data: bytes) -> tuple[int, int, bool]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        return video.codec_context.width, video.codec_context.height, bool(container.streams.audio)


async def job_ids(harness: BotHarness, user: int) -> list[int]:
    assert harness.bot is not None
    return [job.id for job in await harness.bot.store.jobs.for_user(user)]


async def test_kling_in_a_guild_channel_is_charged_rendered_and_posted(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    interaction = await harness.invoke("/kling", user=server.alice, channel=server.general,
                                       prompt="A red fox runs through fresh snow.", duration=10, aspect_ratio="9:16",
                                       cfg_scale=0.7, negative_prompt="text overlays")
    ack = harness.response_message(interaction)
    assert not ack["flags"] & 64
    embed = ack["embeds"][0]
    assert "Kling 2.0" in embed["title"]
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert "Cost" not in fields and "balance" not in str(ack)  # public card: no balance
    assert fields["By"] == f"<@{server.alice}>"
    assert "ETA" in fields
    [job_id] = await job_ids(harness, server.alice)
    assert await receipt(harness, interaction) == \
        f"Charged 20 credits for video #{job_id}; your balance is now 100 credits."
    result = await harness.wait_for_message(server.general, is_result(job_id))
    assert f"<@{server.alice}>" in result["content"]
    mentions = result["allowed_mentions"]
    assert mentions["parse"] == [] and [str(u) for u in mentions["users"]] == [str(server.alice)]
    [video] = video_attachments(result)
    assert probe(await download(harness, video)) == (720, 1280, False)
    assert result["nonce"] == f"job{job_id}"
    buttons = [c["custom_id"] for row in result["components"] for c in row["components"]]
    assert buttons == [f"job:{job_id}:rerun", f"job:{job_id}:vary", f"job:{job_id}:sora"]
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    assert job.delivered_message_id == int(result["id"])
    kinds = [entry.kind for entry in await bot.store.ledger.entries_for_job(job_id)]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.CAPTURE]
    assert await bot.store.ledger.balance(server.alice) == 100


async def test_sora_has_audio_and_exact_size(harness: BotHarness) -> None:
    server = harness.server
    await harness.invoke("/sora", user=server.bob, channel=server.general, prompt="Ocean waves at dusk, slow dolly.",
                         duration=4, resolution="high", orientation="portrait")
    [job_id] = await job_ids(harness, server.bob)
    result = await harness.wait_for_message(server.general, is_result(job_id))
    [video] = video_attachments(result)
    assert probe(await download(harness, video)) == (1024, 1792, True)
    assert "🎬" not in "".join(c.get("label", "") for row in result["components"] for c in row["components"])


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("/kling", {"prompt": "x", "duration": 7}, "5 or 10 seconds"),
        ("/kling", {"prompt": "x", "cfg_scale": 1.5}, "between 0.0 and 1.0"),
        ("/kling", {"prompt": "   "}, "Write a prompt"),
        ("/kling", {"prompt": "x" * 2600}, "at most 2500"),
        ("/sora", {"prompt": "x", "duration": 5}, "4, 8 or 12"),
        ("/sora", {"prompt": "x", "orientation": "square"}, "no square"),
        ("/sora", {"prompt": "x", "use_own_key": True}, "/openai-key set"),
        ("/compare", {"prompt": "x", "length": "medium"}, "short or long"),
    ],
)
async def test_bad_options_get_an_ephemeral_error_and_cost_nothing(
    harness: BotHarness, command: str, options: dict[str, Any], message: str
) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    interaction = await harness.invoke(command, user=server.alice, channel=server.general, **options)
    assert message in harness.ephemeral_text(interaction)
    assert await job_ids(harness, server.alice) == []
    assert await bot.store.ledger.balance(server.alice) == 120


async def test_bad_reference_image_type_is_refused_before_charging(harness: BotHarness) -> None:
    server = harness.server
    interaction = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="x",
                                       attachments={"image": ("a.gif", b"GIF89a", "image/gif")})
    assert "PNG, JPEG or WebP" in harness.ephemeral_text(interaction)
    assert await job_ids(harness, server.alice) == []


async def test_reference_image_becomes_the_first_frame(harness: BotHarness) -> None:
    server = harness.server
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (0, 0, 255)).save(buffer, format="PNG")
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="a blue start",
                         attachments={"image": ("start.png", buffer.getvalue(), "image/png")})
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(server.general, is_result(job_id))
    data = await download(harness, video_attachments(result)[0])
    with av.open(io.BytesIO(data)) as container:
        first = next(container.decode(video=0)).to_image().resize((1, 1)).getpixel((0, 0))
    assert first[2] > 180 and first[0] < 80


async def test_short_balance_and_concurrency_cap_refuse_cleanly(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    expensive = await harness.invoke("/sora", user=server.alice, channel=server.general, prompt="x", duration=12,
                                     resolution="high")
    # 12 s high costs 120 = the whole balance, so it is accepted; the next one is short of credits.
    assert not harness.response_message(expensive)["flags"] & 64
    [job_id] = await job_ids(harness, server.alice)
    short = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="y")
    assert "costs 10 credits but you have 0" in harness.ephemeral_text(short)
    await harness.wait_for_message(server.general, is_result(job_id))
    # Concurrency: bob runs two slow Sora jobs; a third is refused while they run.
    await harness.invoke("/sora", user=server.bob, channel=server.general, prompt="a", duration=12)
    await harness.invoke("/sora", user=server.bob, channel=server.general, prompt="b", duration=12)
    third = await harness.invoke("/kling", user=server.bob, channel=server.general, prompt="c")
    assert "limit 2" in harness.ephemeral_text(third)
    assert len(await job_ids(harness, server.bob)) == 2


@pytest.mark.parametrize("kind", ["content_policy", "model_unavailable", "quota_or_billing"])
async def test_failures_refund_once_and_explain(harness: BotHarness, kind: str) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt=f"oops [fail:{kind}]")
    [job_id] = await job_ids(harness, server.alice)
    notice = await harness.wait_for_message(server.general, lambda m: f"job #{job_id} " in m["content"]
                                            and "failed" in m["content"])
    assert "10 credits were refunded" in notice["content"]
    expected = {"content_policy": "safety filter", "model_unavailable": "MODELS_FILE",
                "quota_or_billing": "operator"}[kind]
    assert expected in notice["content"]
    kinds = [entry.kind for entry in await bot.store.ledger.entries_for_job(job_id)]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.REFUND]
    assert await bot.store.ledger.balance(server.alice) == 120
