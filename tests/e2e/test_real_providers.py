"""/kling and /sora through the loopback Discord with each real adapter pointed at its fake server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sandbox.discord import LoopbackDiscord
from storage import JobState, LedgerKind
from tests.bot.providers.fakes import (
    KLING_ACCESS,
    KLING_SECRET,
    OPENAI_KEY,
    REPLICATE_TOKEN,
    VIDEO_BYTES,
    FakeProviders,
)
from tests.e2e.harness import BotHarness, e2e_settings, mp4_box_order
from tests.e2e.test_video import is_result, job_ids, video_attachments


async def start_bot(server: LoopbackDiscord, fake: FakeProviders, tmp_path: Path, **overrides: object) -> BotHarness:
    settings = e2e_settings(
        tmp_path, server, poll_time_scale=0.0005,
        replicate_api_base=f"{fake.base}/replicate", replicate_api_token=REPLICATE_TOKEN,
        openai_base_url=f"{fake.base}/openai/v1", openai_api_key=OPENAI_KEY,
        kling_api_base=f"{fake.base}/kling", kling_access_key=KLING_ACCESS, kling_secret_key=KLING_SECRET,
        **overrides,
    )
    harness = BotHarness(server=server, settings=settings)
    await harness.start()
    return harness


@pytest.mark.parametrize(("kling", "sora"), [("kling", "openai"), ("replicate", "replicate")])
async def test_kling_and_sora_through_real_adapters(server: LoopbackDiscord, fake: FakeProviders, tmp_path: Path,
                                                    kling: str, sora: str) -> None:
    harness = await start_bot(server, fake, tmp_path, kling_provider=kling, sora_provider=sora)
    try:
        ack = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="A fox.",
                                   cfg_scale=0.9)
        note = str(harness.response_message(ack)["embeds"])
        assert ("ignores CFG scale" in note) is (kling == "kling")
        await harness.invoke("/sora", user=server.alice, channel=server.general, prompt="Waves.", duration=8)
        kling_id, sora_id = sorted(await job_ids(harness, server.alice))
        for job_id in (kling_id, sora_id):
            result = await harness.wait_for_message(server.general, is_result(job_id))
            [video] = video_attachments(result)
            posted = server.files[int(video["id"])][0]
            # The provider's file has its index at the end: posted remuxed to fast start, same samples.
            assert mp4_box_order(VIDEO_BYTES)[-1] == "moov" and mp4_box_order(posted)[1] == "moov"
            assert abs(len(posted) - len(VIDEO_BYTES)) < 1024
            job = await harness.wait_job(job_id, JobState.DELIVERED)
            assert job.provider in (kling, sora) and job.provider_job_id
        assert fake.requests_to(r"/kling/v1/videos/text2video$" if kling == "kling" else r"kling-v2.0/predictions")
        assert fake.requests_to(r"/openai/v1/videos$" if sora == "openai" else r"sora-2/predictions")
    finally:
        await harness.stop()


async def test_retired_model_is_refunded_with_a_message_for_the_operator(
    server: LoopbackDiscord, fake: FakeProviders, tmp_path: Path
) -> None:
    fake.openai_retired = True
    harness = await start_bot(server, fake, tmp_path, sora_provider="openai")
    try:
        await harness.invoke("/sora", user=server.bob, channel=server.general, prompt="Gone.")
        [job_id] = await job_ids(harness, server.bob)
        notice = await harness.wait_for_message(server.general, lambda m: f"job #{job_id} " in m["content"]
                                                and "failed" in m["content"])
        assert "sora-2" in notice["content"] and "MODELS_FILE" in notice["content"]
        assert "16 credits were refunded" in notice["content"]
        assert harness.bot is not None
        kinds = [e.kind for e in await harness.bot.store.ledger.entries_for_job(job_id)]
        assert kinds == [LedgerKind.RESERVE, LedgerKind.REFUND]
    finally:
        await harness.stop()


async def test_rate_limited_then_succeeds(server: LoopbackDiscord, fake: FakeProviders, tmp_path: Path) -> None:
    fake.fail(r"/predictions$", status=429, times=2, body={"detail": "throttled"}, headers={"Retry-After": "0"},
              method="POST")
    harness = await start_bot(server, fake, tmp_path, kling_provider="replicate")
    try:
        await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Patient.")
        [job_id] = await job_ids(harness, server.alice)
        await harness.wait_for_message(server.general, is_result(job_id))
        assert len(fake.requests_to(r"/predictions$", "POST")) == 3
    finally:
        await harness.stop()


async def test_signed_webhook_wakes_the_job_and_bad_ones_are_refused(
    server: LoopbackDiscord, fake: FakeProviders, tmp_path: Path
) -> None:
    import base64
    import json
    import time

    import httpx
    from pydantic import SecretStr

    from bot.providers.webhooks import sign

    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    settings = e2e_settings(tmp_path, server, poll_time_scale=1.0, kling_provider="replicate",
                            replicate_api_base=f"{fake.base}/replicate", replicate_api_token=REPLICATE_TOKEN,
                            public_base_url="https://bot.example", web_port=0, replicate_webhook_secret=secret)
    harness = BotHarness(server=server, settings=settings, serve_web=True)
    bot = await harness.start()
    try:
        assert isinstance(settings.replicate_webhook_secret, SecretStr)
        await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Wake me.")
        [job_id] = await job_ids(harness, server.alice)
        job = await harness.wait_job(job_id, JobState.SUBMITTED)
        # Not due for a while (the first look, an early one for fast finishes, is ~28 s away with
        # nothing learned yet): the result posted within 10 s below is the webhook's doing.
        assert job.next_run_at and job.next_run_at - time.time() > 20
        fake.steps = 0  # the provider has finished by the time it calls back
        body = json.dumps({"id": job.provider_job_id, "status": "succeeded"}).encode()
        stamp = int(time.time())
        url = f"http://127.0.0.1:{bot.web.port}/webhooks/replicate"  # type: ignore[union-attr]
        async with httpx.AsyncClient() as client:
            forged = await client.post(url, content=body, headers={
                "webhook-id": "m1", "webhook-timestamp": str(stamp), "webhook-signature": "v1,AAAA"})
            assert forged.status_code == 401
            good = await client.post(url, content=body, headers={
                "webhook-id": "m1", "webhook-timestamp": str(stamp),
                "webhook-signature": sign(secret, "m1", stamp, body)})
            assert good.status_code == 200 and good.json()["woke"] is True
        await harness.wait_for_message(server.general, is_result(job_id), timeout=10)
        async with httpx.AsyncClient() as client:
            link = bot.delivery.links.url(job_id)  # what a post over the upload limit, or /job show, carries
            assert link is not None and link.startswith("https://bot.example/videos/")
            served = await client.get(f"http://127.0.0.1:{bot.web.port}" + link.removeprefix("https://bot.example"))  # type: ignore[union-attr]
            assert served.status_code == 200 and served.content == VIDEO_BYTES
            guessed = await client.get(f"http://127.0.0.1:{bot.web.port}/videos/job{job_id}.mp4")  # type: ignore[union-attr]
            assert guessed.status_code == 404
            escape = await client.get(f"http://127.0.0.1:{bot.web.port}/videos/..%2Fbot.sqlite3")  # type: ignore[union-attr]
            assert escape.status_code == 404
    finally:
        await harness.stop()


async def test_cancel_of_an_unstoppable_render_is_charged_and_said_first(
    server: LoopbackDiscord, fake: FakeProviders, tmp_path: Path
) -> None:
    """Kling's API cannot stop a render: the cancel says so before the confirm, and charges the set share."""
    fake.steps = 10**6  # the render stays running
    harness = await start_bot(server, fake, tmp_path, kling_provider="kling", cancel_charge_percent=50)
    try:
        ack = await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Unstoppable.",
                                   duration=10)
        [job_id] = await job_ids(harness, server.alice)
        await harness.wait_job(job_id, JobState.SUBMITTED, JobState.RUNNING)
        ask = await harness.click(harness.response_message(ack), f"job:{job_id}:cancel", user=server.alice)
        assert "10 of its 20 credits are charged, 10 come back" in harness.ephemeral_text(ask)
        done = await harness.click(harness.response_message(ask), f"job:{job_id}:stop", user=server.alice)
        assert "10 credits refunded" in harness.ephemeral_text(done)
        assert "10 credits charged" in harness.ephemeral_text(done)
        assert harness.bot is not None
        entries = await harness.bot.store.ledger.entries_for_job(job_id)
        assert [(e.kind, e.amount, e.idempotency_key) for e in entries] == [
            (LedgerKind.RESERVE, -20, f"reserve:{job_id}"), (LedgerKind.REFUND, 10, f"settle:{job_id}")]
        assert await harness.bot.store.ledger.balance(server.alice) == 110
        assert (await harness.bot.store.ledger.audit())["unsettled_finished_jobs"] == 0
    finally:
        await harness.stop()


@pytest.mark.parametrize(("command", "provider", "create"), [
    ("/kling", "kling", r"/kling/v1/videos/text2video$"),
    ("/kling", "replicate", r"/predictions$"),
    ("/sora", "openai", r"/openai/v1/videos$"),
])
async def test_a_lost_create_answer_makes_one_task_not_two(server: LoopbackDiscord, fake: FakeProviders,
                                                           tmp_path: Path, command: str, provider: str,
                                                           create: str) -> None:
    """The provider accepted the create but the bot never read the answer (reset): recovery finds the task."""
    fake.fail(create, after=True, reset=True, method="POST")
    harness = await start_bot(server, fake, tmp_path, kling_provider=provider if command == "/kling" else "simulated",
                              sora_provider=provider if command == "/sora" else "simulated")
    try:
        await harness.invoke(command, user=server.alice, channel=server.general, prompt="Exactly once.")
        [job_id] = await job_ids(harness, server.alice)
        await harness.wait_for_message(server.general, is_result(job_id))
        job = await harness.wait_job(job_id, JobState.DELIVERED)
        assert len(fake.requests_to(create, "POST")) == 1  # never submitted again
        assert fake.live_tasks() == [job.provider_job_id.rpartition(":")[2]]
    finally:
        await harness.stop()
