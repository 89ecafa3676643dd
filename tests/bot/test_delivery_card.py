"""The last edit a webhook-only card gets says the video will come by DM (issue 14 item 2, point 3)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.crypto import SecretBox
from bot.delivery import PROGRESS_EVERY, Delivery
from bot.providers.base import ProviderState, StatusResult
from storage import JobState, Store
from tests.bot.test_delivery_ack import NoDiscord, webhook_only_job


async def test_the_last_edit_before_the_token_ends_is_taken_and_says_dm(store: Store, tmp_path: Path) -> None:
    secrets = SecretBox("k" * 32)
    now = time.time()
    job = await webhook_only_job(store, secrets, now, token_left=400)
    await store.jobs.acknowledge([job.id], now=now, card_message_id=5)
    job = await store.jobs.get(job.id)
    assert job is not None
    delivery = Delivery(NoDiscord(), Settings(video_dir=tmp_path), secrets)  # type: ignore[arg-type]
    edits: list[dict[str, Any]] = []

    async def edit_card(job: Any, fields: dict[str, Any]) -> object:
        edits.append(fields)
        return object()

    delivery._edit_card = edit_card  # type: ignore[method-assign]
    delivery._webhook = lambda job: object()  # type: ignore[assignment,method-assign,return-value]
    running = replace(job, state=JobState.RUNNING, progress=50, last_progress_edit_at=now - PROGRESS_EVERY / 2)
    status = StatusResult(ProviderState.RUNNING, progress=50)

    # The next look comes while the token still serves: an ordinary, throttled edit (none now).
    assert await delivery.progress(replace(running, next_run_at=now + 60), status) is False
    assert edits == []
    # The next look falls past the token's usable life: this is the last chance, taken despite the throttle.
    assert await delivery.progress(replace(running, next_run_at=now + 360), status) is True
    [fields] = edits
    delivery_field = next(f for f in fields["embeds"][0].fields if f.name == "Delivery")
    assert "stops updating" in (delivery_field.value or "") and "by DM" in (delivery_field.value or "")
    # A card in a channel the bot can reach has no last chance: it is edited through the channel later.
    assert not delivery.last_chance(replace(running, guild_installed=True, next_run_at=now + 360))
