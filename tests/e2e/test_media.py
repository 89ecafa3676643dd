"""Videos over the channel's upload limit are re-encoded to fit and attached (issue #14, item 1)."""

from __future__ import annotations

import io
import re

import av
import pytest

from storage import JobState
from tests.e2e.harness import BotHarness, mp4_box_order
from tests.e2e.test_video import download, is_result, job_ids, video_attachments

LIMIT = 100_000  # the simulated 5 s Kling clip at 2 fps is ~150 kB


async def small_room(harness: BotHarness) -> int:
    server = harness.server
    small = server.add_guild("Small uploads", upload_limit=LIMIT)
    room = server.add_channel(small, "room")
    await server.broadcast("GUILD_CREATE", server.guild_payload(small))  # the bot was already connected
    return room


def probe(data: bytes) -> tuple[int, int, float, str, str, bool]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        duration = float(video.duration * video.time_base)
        return (video.codec_context.width, video.codec_context.height, duration, video.codec_context.name,
                video.codec_context.pix_fmt, bool(container.streams.audio))


async def test_over_limit_video_is_reencoded_attached_and_fast_start(harness: BotHarness) -> None:
    server = harness.server
    room = await small_room(harness)
    await harness.invoke("/kling", user=server.alice, channel=room, prompt="A big file.")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(room, is_result(job_id))
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    assert job.result_bytes > LIMIT  # the provider's file really was over the limit
    [video] = video_attachments(result)
    data = await download(harness, video)
    assert len(data) <= LIMIT and video["size"] == len(data)
    width, height, duration, codec, pix_fmt, audio = probe(data)
    assert abs(width / height - 16 / 9) < 0.02 and width % 2 == 0 and height % 2 == 0
    assert abs(duration - 5.0) < 0.05 and (codec, pix_fmt, audio) == ("h264", "yuv420p", False)
    assert mp4_box_order(data).index("moov") < mp4_box_order(data).index("mdat")
    assert "upload limit" not in result["content"] and "/job show" not in result["content"]
    posts = [r for r in server.requests if r.method == "POST" and r.path == f"/channels/{room}/messages"]
    assert [p.files for p in posts] == [[f"kling-job{job_id}.mp4"]]  # fitted before the upload: no 413
    assert not list((harness.settings.video_dir / "prepared").glob("job*/*.mp4"))  # derived copy removed


@pytest.mark.settings(public_base_url="https://videos.example.test")
async def test_reencoded_video_also_links_the_full_quality_file(harness: BotHarness) -> None:
    server = harness.server
    room = await small_room(harness)
    await harness.invoke("/kling", user=server.alice, channel=room, prompt="Full quality, please.")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(room, is_result(job_id))
    [video] = video_attachments(result)
    assert len(await download(harness, video)) <= LIMIT
    assert re.search(rf"full quality: https://videos\.example\.test/videos/job{job_id}-\d+-[A-Za-z0-9_-]+\.mp4",
                     result["content"]), result["content"]


async def test_video_under_the_limit_is_posted_unchanged(harness: BotHarness) -> None:
    server = harness.server
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Small enough.")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(server.general, is_result(job_id))
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    [video] = video_attachments(result)
    assert len(await download(harness, video)) == job.result_bytes


def test_the_fast_start_check_catches_moov_at_the_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from tests.bot.test_media import make_clip
    from tests.e2e.harness import assert_videos_fast_start

    late = make_clip(tmp_path / "late.mp4", seconds=0.5, audio=False).read_bytes()
    early = make_clip(tmp_path / "early.mp4", seconds=0.5, audio=False, faststart=True).read_bytes()
    assert_videos_fast_start(SimpleNamespace(files={1: (early, "video/mp4", "a.mp4")}))  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="not fast-start"):
        assert_videos_fast_start(SimpleNamespace(files={2: (late, "video/mp4", "b.mp4")}))  # type: ignore[arg-type]


async def test_job_show_fits_the_video_too(harness: BotHarness) -> None:
    server = harness.server
    room = await small_room(harness)
    await harness.invoke("/kling", user=server.alice, channel=room, prompt="Show me again.")
    [job_id] = await job_ids(harness, server.alice)
    await harness.wait_job(job_id, JobState.DELIVERED)
    shown = await harness.invoke("/job show", user=server.alice, channel=room, id=job_id)
    [followup_id] = await shown.wait_followups(1, within=30)
    [message] = [m for m in server.all_messages() if m["id"] == str(followup_id)]
    assert message["flags"] & 64
    [video] = video_attachments(message)
    assert video["filename"] == f"kling-job{job_id}.mp4" and len(await download(harness, video)) <= LIMIT
