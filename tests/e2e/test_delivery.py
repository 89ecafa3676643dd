"""Where results go: guild channel, DM, user installs, expired tokens, closed DMs, big files, restarts."""

from __future__ import annotations

import re

import pytest

from storage import JobState
from tests.e2e.harness import BotHarness
from tests.e2e.test_video import is_result, job_ids, video_attachments


async def test_dm_command_is_answered_and_delivered_in_the_dm(harness: BotHarness) -> None:
    server = harness.server
    dm = server.dm_channel(server.alice)
    await harness.invoke("/kling", user=server.alice, channel=dm, prompt="A cat stretches.")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(dm, is_result(job_id))
    assert video_attachments(result) and result["nonce"] == f"job{job_id}"
    assert not any(is_result(job_id)(m) for m in server.messages[server.general])


async def test_user_install_in_a_foreign_guild_edits_the_card_into_the_result(harness: BotHarness) -> None:
    server = harness.server
    foreign = server.add_guild("Someone else's server", bot_member=False)
    lounge = server.add_channel(foreign, "lounge")
    interaction = await harness.invoke("/kling", user=server.bob, channel=lounge, prompt="A dog surfs.")
    assert interaction.context == "user_install"
    [job_id] = await job_ids(harness, server.bob)
    result = await harness.wait_for_message(lounge, is_result(job_id))
    assert int(result["id"]) == interaction.original_message_id  # through the interaction, not channel.send
    assert not [r for r in server.requests if r.method == "POST" and r.path == f"/channels/{lounge}/messages"]


@pytest.mark.settings(simulated_speed=0.01)
async def test_expired_token_in_a_foreign_guild_falls_back_to_dm(harness: BotHarness, clock) -> None:  # type: ignore[no-untyped-def]
    server = harness.server
    foreign = server.add_guild("Elsewhere", bot_member=False)
    lounge = server.add_channel(foreign, "lounge")
    await harness.invoke("/kling", user=server.bob, channel=lounge, prompt="A slow sunrise.")
    clock.advance(16 * 60)  # Discord's side: the token is now dead
    [job_id] = await job_ids(harness, server.bob)
    dm = server.dm_channel(server.bob)
    result = await harness.wait_for_message(dm, is_result(job_id))
    assert video_attachments(result)
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    assert job.delivered_channel_id == dm


@pytest.mark.settings(simulated_speed=0.01)
async def test_closed_dms_keep_the_job_for_job_show(harness: BotHarness, clock) -> None:  # type: ignore[no-untyped-def]
    server = harness.server
    loner = server.add_user("loner", dms_closed=True)
    foreign = server.add_guild("Elsewhere", bot_member=False)
    lounge = server.add_channel(foreign, "lounge")
    server.guilds[foreign].members.add(loner)
    await harness.invoke("/kling", user=loner, channel=lounge, prompt="Rain on a window.")
    clock.advance(16 * 60)
    [job_id] = await job_ids(harness, loner)
    job = await harness.wait_job(job_id, JobState.UNDELIVERED)
    assert job.result_path and job.error_code == "undelivered"
    clock.advance(-16 * 60)
    shown = await harness.invoke("/job show", user=loner, channel=server.dm_channel(loner), id=job_id)
    message = harness.response_message(shown)
    assert message["flags"] & 64 and video_attachments(message)


@pytest.mark.settings(public_base_url="https://videos.example.test")
async def test_video_that_cannot_fit_the_upload_limit_is_posted_as_a_link(harness: BotHarness) -> None:
    server = harness.server
    small = server.add_guild("Tiny uploads", upload_limit=20_000)
    room = server.add_channel(small, "room")
    # The bot was already connected; give it the new guild the way Discord would.
    await server.broadcast("GUILD_CREATE", server.guild_payload(small))
    await harness.invoke("/kling", user=server.alice, channel=room, prompt="A big file.")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(room, is_result(job_id))
    assert video_attachments(result) == []
    assert re.search(rf"https://videos\.example\.test/videos/job{job_id}-\d+-[\w-]{{22}}\.mp4", result["content"])
    posts = [r for r in server.requests if r.method == "POST" and r.path == f"/channels/{room}/messages"]
    # 20 kB cannot hold 5 s even re-encoded; the bot knows the channel's limit, so it links without a 413 first.
    assert [p.files for p in posts] == [[]]
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    assert job.delivered_message_id == int(result["id"])


async def test_redelivery_after_a_crash_reuses_the_posted_message(harness: BotHarness) -> None:
    """Posting again with the job's nonce returns the message already posted, not a second one."""
    server, bot = harness.server, harness.bot
    assert bot is not None
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Once only.")
    [job_id] = await job_ids(harness, server.alice)
    first = await harness.wait_for_message(server.general, is_result(job_id))
    job = await harness.wait_job(job_id, JobState.DELIVERED)
    again = await bot.delivery.deliver(job)
    assert again.message_id == int(first["id"])
    assert sum(1 for m in server.messages[server.general] if is_result(job_id)(m)) == 1


@pytest.mark.settings(simulated_speed=0.01)
async def test_restart_mid_job_completes_and_delivers_once(harness: BotHarness) -> None:
    server = harness.server
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="Survives a restart.")
    [job_id] = await job_ids(harness, server.alice)
    await harness.restart()
    result = await harness.wait_for_message(server.general, is_result(job_id))
    await harness.wait_job(job_id, JobState.DELIVERED)
    assert sum(1 for m in server.messages[server.general] if is_result(job_id)(m)) == 1
    # Buttons on the old message still work after the restart.
    rerun = await harness.click(result, f"job:{job_id}:rerun", user=server.alice)
    assert rerun.response_type == 4 and "Rerun of job" in str(harness.response_message(rerun)["embeds"])


@pytest.mark.parametrize("where", ["dm", "user_install"])
@pytest.mark.parametrize(("command", "options", "marker"), [
    ("/sora", {"prompt": "Waves in the dark.", "orientation": "portrait"}, "is ready"),
    ("/compare", {"prompt": "A kite.", "blind": True}, "comparison is ready"),
])
async def test_sora_and_compare_in_dms_and_user_installs(harness: BotHarness, where: str, command: str,
                                                         options: dict, marker: str) -> None:
    server = harness.server
    if where == "dm":
        channel = server.dm_channel(server.bob)
    else:
        foreign = server.add_guild("Friends", bot_member=False)
        channel = server.add_channel(foreign, "hangout")
    interaction = await harness.invoke(command, user=server.bob, channel=channel, **options)
    assert not harness.response_message(interaction)["flags"] & 64
    result = await harness.wait_for_message(channel, lambda m: marker in m["content"])
    assert video_attachments(result)
    if where == "user_install":
        assert int(result["id"]) == interaction.original_message_id  # the card became the result
