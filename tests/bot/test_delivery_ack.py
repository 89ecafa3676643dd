"""Workers leave an interaction's webhook alone until the command's answer is recorded."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.crypto import SecretBox
from bot.delivery import ACK_WAIT, Delivery, Post
from bot.runner import DeliveryRetry
from storage import Job, NewJob, Store


class NoDiscord:
    """Any use of Discord fails the test: nothing may be sent before the ack is recorded."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Discord was used ({name}) before the interaction was acknowledged")


async def webhook_only_job(store: Store, secrets: SecretBox, now: float, *, token_left: float) -> Job:
    """A user-install job (no channel access): only the interaction's webhook reaches its channel."""
    [job] = await store.jobs.create([NewJob(
        user_id=1, model="kling", provider="simulated", request_json='{"prompt": "x"}', price=0, channel_id=9,
        guild_installed=False, application_id=77, interaction_token=secrets.encrypt_text("tok"),
        token_expires_at=now + token_left)], now=now)
    return job


async def test_followup_and_edits_wait_for_the_recorded_ack(store: Store, tmp_path: Path) -> None:
    secrets = SecretBox("k" * 32)
    now = time.time()
    job = await webhook_only_job(store, secrets, now, token_left=900)
    delivery = Delivery(NoDiscord(), Settings(video_dir=tmp_path), secrets)  # type: ignore[arg-type]
    assert job.acked_at is None and not delivery.token_alive(job)
    assert await delivery._edit_original(job) is False  # no edit of an answer that may not exist yet
    with pytest.raises(DeliveryRetry):
        await delivery._send(job, Post(content="hi"), nonce="n")
    await store.jobs.acknowledge([job.id])
    acked = await store.jobs.get(job.id)
    assert acked is not None and acked.acked_at is not None and delivery.token_alive(acked)
    # An answer that never came (the gateway died before acking): after ACK_WAIT the webhook is skipped.
    stale = replace(job, created_at=now - ACK_WAIT - 1)
    assert not delivery.awaiting_ack(stale) and not delivery.token_alive(stale)
