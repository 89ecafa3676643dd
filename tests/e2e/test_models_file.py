"""MODELS_FILE end to end: the issue's example entry, exactly as written, through the loopback Discord.

The operator adds `kling-heldout` without code; `/kling model:kling-heldout aspect_ratio:16:9
duration:10` must show up as a choice, be charged 30 credits, and deliver a 1920x1080, 10 s MP4
with an audio track rendered by the simulated provider. Options the model does not take are
refused in plain words, ephemerally, charging nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av

from bot.sandbox.discord import LoopbackDiscord
from storage import JobState, LedgerKind
from tests.bot.test_catalogue import HELDOUT as HELDOUT_ENTRY
from tests.e2e.harness import BotHarness, e2e_settings
from tests.e2e.test_video import receipt

HELDOUT = HELDOUT_ENTRY.lstrip() + '''
[models."kling-3.0"]
enabled = false
'''


def probe(data: bytes) -> tuple[int, int, bool, float]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        seconds = float(container.duration or 0) / av.time_base
        return video.codec_context.width, video.codec_context.height, bool(container.streams.audio), seconds


def is_result(job_id: int) -> Any:
    return lambda m: f"job #{job_id})" in m["content"] and "ready" in m["content"]


async def test_the_issue_example_renders_1080p_10s_with_audio_for_30_credits(server: LoopbackDiscord,
                                                                              tmp_path: Path) -> None:
    models_file = tmp_path / "operator-models.toml"
    models_file.write_text(HELDOUT)
    harness = BotHarness(server=server, settings=e2e_settings(tmp_path, server, models_file=models_file))
    bot = await harness.start()
    try:
        commands = {command["name"]: command for command in server.registered_commands()}
        kling = {option["name"]: option for option in commands["kling"]["options"]}
        models = [choice["value"] for choice in kling["model"]["choices"]]
        assert "kling-heldout" in models and "kling-3.0" not in models  # added, and hidden by enabled = false

        interaction = await harness.invoke("/kling", user=server.alice, channel=server.general,
                                           prompt="A lighthouse in a storm, waves crashing.", model="kling-heldout",
                                           aspect_ratio="16:9", duration=10)
        ack = harness.response_message(interaction)
        assert not ack["flags"] & 64
        embed = ack["embeds"][0]
        assert embed["title"].startswith("Kling Heldout")
        fields = {field["name"]: field["value"] for field in embed["fields"]}
        assert "1920x1080" in fields["Options"]
        assert "Charged 30 credits" in await receipt(harness, interaction)
        [job] = await bot.store.jobs.for_user(server.alice)
        result = await harness.wait_for_message(server.general, is_result(job.id), timeout=120)
        [video] = [a for a in result["attachments"] if a["filename"].endswith(".mp4")]
        width, height, audio, seconds = probe(server.files[int(video["id"])][0])
        assert (width, height, audio) == (1920, 1080, True)
        assert abs(seconds - 10) < 0.6
        job = await harness.wait_job(job.id, JobState.DELIVERED)
        assert job.price == 30
        kinds = [entry.kind for entry in await bot.store.ledger.entries_for_job(job.id)]
        assert kinds == [LedgerKind.RESERVE, LedgerKind.CAPTURE]
        assert await bot.store.ledger.balance(server.alice) == 120 - 30

        # Refused in plain words, ephemeral, nothing charged: options the chosen model does not take.
        refusals = [
            ("/kling", {"model": "kling-2.6", "cfg_scale": 0.7}, "Kling 2.6 has no CFG scale option."),
            ("/sora", {"model": "sora-2", "resolution": "high"}, "Sora 2 has no high resolution; choose model Sora 2 Pro."),
        ]
        for command, options, words in refusals:
            refused = await harness.invoke(command, user=server.bob, channel=server.general, prompt="p", **options)
            assert words in harness.ephemeral_text(refused)
            assert harness.response_message(refused)["flags"] & 64
        assert await bot.store.jobs.for_user(server.bob) == []
        assert await bot.store.ledger.balance(server.bob) == 120
    finally:
        await harness.stop()

    # The operator retires the model: the result's rerun button refuses it in words and charges nothing.
    models_file.write_text(HELDOUT.replace('label = "Kling Heldout"', 'label = "Kling Heldout"\nenabled = false'))
    harness = BotHarness(server=server, settings=e2e_settings(tmp_path, server, models_file=models_file))
    bot = await harness.start()
    try:
        rerun = await harness.click(result, f"job:{job.id}:rerun", user=server.alice)
        assert "Kling Heldout is no longer offered here" in harness.ephemeral_text(rerun)
        assert [j.id for j in await bot.store.jobs.for_user(server.alice)] == [job.id]
        assert await bot.store.ledger.balance(server.alice) == 120 - 30
    finally:
        await harness.stop()
