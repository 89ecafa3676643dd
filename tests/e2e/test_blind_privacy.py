"""A blind /compare stays blind for its owner too: /jobs and /job show don't name the model before the vote."""

from __future__ import annotations

import json
from typing import Any

from storage import JobState
from tests.e2e.harness import BotHarness
from tests.e2e.test_video import job_ids

MODEL_WORDS = ("kling", "sora")


def vote_message(harness: BotHarness, compare_id: int) -> dict[str, Any]:
    """The public message carrying the pair's vote buttons (found by custom id, not by its wording)."""
    wanted = f"cmp:{compare_id}:vote:a"
    for message in harness.server.all_messages():
        ids = [c.get("custom_id") for row in message["components"] for c in row["components"]]
        if wanted in ids:
            return message
    raise AssertionError("no message with the vote buttons")


async def test_owner_cannot_see_which_model_is_which_before_voting(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="Waves on a pier.",
                         length="short", orientation="landscape", blind=True)
    ids = sorted(await job_ids(harness, server.alice))
    assert len(ids) == 2
    jobs = [await harness.wait_job(i, JobState.DELIVERED) for i in ids]
    compare_id = jobs[0].compare_id
    assert compare_id is not None

    listing = harness.ephemeral_text(await harness.invoke("/jobs", user=server.alice))
    assert [word for word in MODEL_WORDS if word in listing.lower()] == []
    assert listing.count(f"Blind compare #{compare_id}") == 2 and f"#{ids[0]}" in listing

    show = await harness.invoke("/job show", user=server.alice, options={"id": ids[0]})
    answer = harness.response_message(show)
    assert answer["flags"] & 64 and answer["attachments"] == []
    assert [word for word in MODEL_WORDS if word in json.dumps(answer).lower()] == []
    assert f"blind compare #{compare_id}" in harness.ephemeral_text(show)

    # Someone else's vote reveals nothing to the owner; the owner's own vote does.
    await harness.click(vote_message(harness, compare_id), f"cmp:{compare_id}:vote:b", user=server.bob)
    assert "kling" not in harness.ephemeral_text(await harness.invoke("/jobs", user=server.alice)).lower()
    await harness.click(vote_message(harness, compare_id), f"cmp:{compare_id}:vote:a", user=server.alice)
    listing = harness.ephemeral_text(await harness.invoke("/jobs", user=server.alice))
    assert "Kling" in listing and "Sora" in listing and "Blind compare" not in listing
    show = await harness.invoke("/job show", user=server.alice, options={"id": ids[0]})
    assert [a["filename"] for a in harness.response_message(show)["attachments"]] == [f"{jobs[0].model}-job{ids[0]}.mp4"]


async def test_a_compare_that_is_not_blind_is_listed_as_usual(harness: BotHarness) -> None:
    server = harness.server
    await harness.invoke("/compare", user=server.alice, channel=server.general, prompt="Waves.", blind=False)
    for job_id in await job_ids(harness, server.alice):
        await harness.wait_job(job_id, JobState.DELIVERED)
    listing = harness.ephemeral_text(await harness.invoke("/jobs", user=server.alice))
    assert "Kling" in listing and "Sora" in listing and "Blind compare" not in listing
