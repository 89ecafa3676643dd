"""A blind /compare is blind until the vote (issue #14, item 4), then reveals the full clips."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import av
import pytest

import bot.providers.simulated as simulated
from storage import JobState
from tests.e2e.harness import BotHarness
from tests.e2e.one_message import deleted_ids, one_public_message
from tests.e2e.test_video import download, job_ids, receipt, video_attachments

MODEL_WORDS = ("kling", "sora", "openai", "kuaishou")


def probe(data: bytes) -> tuple[float, bool, str, tuple[int, int]]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        return (round(float(video.duration * video.time_base), 2), bool(container.streams.audio),
                video.codec_context.name, (video.codec_context.width, video.codec_context.height))


def last_frame_bottom(data: bytes) -> tuple[int, int, int]:
    """Mean colour of the bottom rows of the last frame: white where a full progress bar is drawn."""
    with av.open(io.BytesIO(data)) as container:
        *_, last = container.decode(video=0)
    image = last.to_image()
    strip = image.crop((0, image.height - 3, image.width, image.height)).resize((1, 1))
    return strip.getpixel((0, 0))  # type: ignore[return-value]


def names_a_model(value: Any) -> list[str]:
    text = json.dumps(value).lower() if not isinstance(value, bytes) else value.decode("latin-1").lower()
    return [word for word in MODEL_WORDS if word in text]


def visible(message: dict[str, Any]) -> dict[str, Any]:
    """What a user (or their client) can see of a message, custom ids excluded."""
    labels = [c.get("label") for row in message["components"] for c in row["components"]]
    return {"content": message["content"], "embeds": message["embeds"], "labels": labels,
            "files": [(a["filename"], a.get("description"), a.get("title")) for a in message["attachments"]]}


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what the simulated renderer was asked to burn into each clip."""
    calls: list[dict[str, Any]] = []
    real = simulated.render_video

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs)
        real(*args, **kwargs)

    monkeypatch.setattr(simulated, "render_video", spy)
    return calls


async def test_blind_compare_hides_the_models_until_the_vote(harness: BotHarness, renders: list[dict]) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    ack = await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="A lighthouse in fog.",
                               length="short", orientation="landscape", blind=True)
    card = harness.response_message(ack)
    assert names_a_model(visible(card)) == [] and "job #" not in json.dumps(card["embeds"])
    assert [c["label"] for row in card["components"] for c in row["components"]] == ["Cancel A", "Cancel B"]
    assert "credits" not in json.dumps(card["embeds"])  # the price and balance are in the private receipt
    assert await receipt(harness, ack) == "Charged 26 credits for this comparison; your balance is now 94 credits."
    assert await bot.store.ledger.balance(server.alice) == 120 - 10 - 16  # charged as before

    result = await harness.wait_for_message(server.general, lambda m: "comparison is ready" in m["content"])
    assert names_a_model(visible(result)) == []
    videos = sorted(video_attachments(result), key=lambda a: a["filename"])
    assert [v["filename"] for v in videos] == ["A.mp4", "B.mp4"]
    clips = [await download(harness, v) for v in videos]
    infos = [probe(data) for data in clips]
    # Kling renders 5 s without sound, Sora 4 s with: both posted at 4 s, silent, same codec and size.
    assert infos[0] == infos[1] == (4.0, False, "h264", (1280, 720))
    for data in clips:
        assert names_a_model(data) == []  # no MP4 tag, handler or file name names a model
        assert sum(last_frame_bottom(data)) < 3 * 200  # no progress bar that would end early on the longer clip
    assert {call["title"] for call in renders} == {"Simulated clip"}
    assert {call["show_length"] for call in renders} == {False}

    jobs = [await harness.wait_job(i, JobState.DELIVERED) for i in await job_ids(harness, server.alice)]
    compare = await bot.store.jobs.get_compare(jobs[0].compare_id)
    assert compare is not None and compare.blind
    shown = [e["message"] for e in server.channel_log(server.general)  # the command's answer, every state of it
             if e["type"] != "message_delete" and e["message"]["id"] == str(ack.original_message_id)]
    assert shown and all(names_a_model(visible(card)) == [] for card in shown)
    assert (await one_public_message(server, server.general))["id"] == result["id"]  # the card went with the post
    assert str(ack.original_message_id) in deleted_ids(server, server.general)

    vote = await harness.click(result, f"cmp:{compare.id}:vote:a", user=server.bob)
    [followup_id] = await vote.wait_followups(1, within=30)
    [reveal] = [m for m in server.all_messages() if m["id"] == str(followup_id)]
    assert reveal["flags"] & 64  # only the voter sees the reveal
    a_model, b_model = compare.model_in("a"), compare.model_in("b")
    labels = {"kling": "Kling 2.0", "sora": "Sora 2"}
    assert f"A was **{labels[a_model]}**, B was **{labels[b_model]}**" in reveal["content"]
    assert "Vote recorded" in reveal["content"] and f"preferred A ({labels[a_model]})" in reveal["content"]
    full = {v["filename"]: probe(await download(harness, v)) for v in video_attachments(reveal)}
    assert full == {f"A-{a_model}.mp4": {"kling": (5.0, False, "h264", (1280, 720)),
                                        "sora": (4.0, True, "h264", (1280, 720))}[a_model],
                    f"B-{b_model}.mp4": {"kling": (5.0, False, "h264", (1280, 720)),
                                        "sora": (4.0, True, "h264", (1280, 720))}[b_model]}
    stats = await bot.store.jobs.vote_stats()
    assert stats[a_model] == 1 and sum(stats.values()) == 1
    public = next(m for m in server.messages[server.general] if m["id"] == result["id"])
    assert names_a_model(visible(public)) == []  # the public message stays blind for the other voters


@pytest.mark.parametrize("sora_first", [False, True])
async def test_blind_order_and_job_ids_are_random(harness: BotHarness, monkeypatch: pytest.MonkeyPatch,
                                                  sora_first: bool) -> None:
    """A and B, and which job gets the lower id, come from the random module, not from the model."""
    server, bot = harness.server, harness.bot
    assert bot is not None
    monkeypatch.setattr(random, "shuffle", lambda items: items.reverse() if sora_first else None)
    monkeypatch.setattr(random, "choice", lambda options: "sora" if sora_first else "kling")
    await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="Order.", blind=True)
    ids = sorted(await job_ids(harness, server.alice))
    first = await bot.store.jobs.get(ids[0])
    assert first is not None and first.model == ("sora" if sora_first else "kling")
    compare = await bot.store.jobs.get_compare(first.compare_id)  # type: ignore[arg-type]
    assert compare is not None and compare.model_in("a") == ("sora" if sora_first else "kling")
    result = await harness.wait_for_message(server.general, lambda m: "comparison is ready" in m["content"])
    assert len(video_attachments(result)) == 2
