"""The bot's public web server, over real HTTP on 127.0.0.1: signed video links and hostile callbacks."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.providers.kling import callback_token
from bot.providers.webhooks import sign
from bot.sandbox.discord import LoopbackDiscord
from storage import JobState
from tests.e2e.harness import BotHarness, FakeClock, e2e_settings
from tests.e2e.test_video import is_result, job_ids

PUBLIC = "https://videos.example.test"
WHSEC = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZQ"  # unpadded, as Standard Webhooks allows
LINK = re.compile(re.escape(PUBLIC) + r"(/videos/[A-Za-z0-9_.-]+)")


async def start(server: LoopbackDiscord, tmp_path: Path, **overrides: object) -> BotHarness:
    settings = e2e_settings(tmp_path, server, public_base_url=PUBLIC, web_port=0, **overrides)
    harness = BotHarness(server=server, settings=settings, serve_web=True, clock=FakeClock())
    await harness.start()
    return harness


@pytest.fixture
async def web(server: LoopbackDiscord, tmp_path: Path) -> AsyncIterator[BotHarness]:
    harness = await start(server, tmp_path, replicate_webhook_secret=WHSEC, kling_secret_key="k" * 32)
    try:
        yield harness
    finally:
        await harness.stop()


def base(harness: BotHarness) -> str:
    assert harness.bot is not None and harness.bot.web is not None
    return f"http://127.0.0.1:{harness.bot.web.port}"


async def linked_job(harness: BotHarness) -> tuple[int, str, int]:
    """Run a job in a guild whose upload limit forces a link; return the job id, the link's path, the channel."""
    server = harness.server
    small = server.add_guild("Tiny uploads", upload_limit=20_000)
    room = server.add_channel(small, "room")
    await server.broadcast("GUILD_CREATE", server.guild_payload(small))
    await harness.invoke("/kling", user=server.alice, channel=room, prompt="A big file.")
    [job_id] = await job_ids(harness, server.alice)
    result = await harness.wait_for_message(room, is_result(job_id))
    await harness.wait_job(job_id, JobState.DELIVERED)
    match = LINK.search(result["content"])
    assert match, result["content"]
    return job_id, match.group(1), room


async def test_video_links_are_signed_private_and_expire(web: BotHarness) -> None:
    assert web.bot is not None
    job_id, path, room = await linked_job(web)
    job = await web.bot.store.jobs.get(job_id)
    stored = Path(job.result_path).read_bytes()
    name = path.removeprefix("/videos/")
    assert re.fullmatch(rf"job{job_id}-\d{{10}}-[A-Za-z0-9_-]{{22}}\.mp4", name)
    async with httpx.AsyncClient(base_url=base(web)) as client:
        ok = await client.get(path)
        assert ok.status_code == 200 and ok.content == stored
        assert ok.headers["content-type"] == "video/mp4" and "private" in ok.headers["cache-control"]
        sig = name.split("-", 2)[2].removesuffix(".mp4")
        expires = name.split("-")[1]
        tampered = sig[:-1] + ("A" if sig[-1] != "A" else "B")
        refused = [
            f"/videos/job{job_id}.mp4",  # the old, guessable name
            f"/videos/job{job_id}-{expires}-{tampered}.mp4",
            f"/videos/job{job_id + 1}-{expires}-{sig}.mp4",  # another job with this job's signature
            f"/videos/job{job_id}-{int(expires) + 3600}-{sig}.mp4",  # a later expiry
            path.replace(".mp4", ".MP4"),
            path + "%00",
            "/videos/..%2Fbot.sqlite3",
            "/videos/%2e%2e%2fsecret.key",
            "/videos/..%252Fbot.sqlite3",
            "/videos/refs%2Fjob1.png",
            f"/videos/%2E%2E%2Fvideos%2F{name}",
            f"/videos/%2Fjob{job_id}.mp4",
            f"/videos/job{job_id}%2F..%2F{name}",
            f"/videos/job{job_id}-{expires}-{sig}.mp4/",
            f"/videos/０{name}",  # unicode digits are not digits here
        ]
        for bad in refused:
            response = await client.get(bad)
            assert response.status_code == 404, bad
            assert response.content != stored

        # Past VIDEO_LINK_HOURS the posted link stops working; /job show signs a fresh one.
        assert isinstance(web.bot.clock, FakeClock)
        web.bot.clock.advance(web.settings.video_link_hours * 3600 + 3601)
        assert (await client.get(path)).status_code == 404
        shown = await web.invoke("/job show", user=web.server.alice, channel=room, id=job_id)
        fresh = LINK.search(json.dumps(web.response_message(shown)["embeds"]))
        assert fresh, "over the upload limit, /job show gives a link"
        fresh_path = fresh.group(1)
        assert fresh_path != path
        again = await client.get(fresh_path)
        assert again.status_code == 200 and again.content == stored


async def test_canceled_or_missing_results_are_not_served(web: BotHarness) -> None:
    assert web.bot is not None
    job_id, path, _ = await linked_job(web)
    await web.bot.store.jobs.update(job_id, result_path=None)  # as retention does when it removes the file
    async with httpx.AsyncClient(base_url=base(web)) as client:
        assert (await client.get(path)).status_code == 404


async def test_no_links_without_a_file(web: BotHarness) -> None:
    assert web.bot is not None
    async with httpx.AsyncClient(base_url=base(web)) as client:
        unknown = web.bot.delivery.links.url(999)
        assert unknown is not None
        assert (await client.get(unknown.removeprefix(PUBLIC))).status_code == 404


def replicate_headers(body: bytes, *, message_id: str = "msg_1", stamp: str | None = None,
                      secret: str = WHSEC) -> dict[str, str]:
    timestamp = stamp or str(int(time.time()))
    signature = sign(secret, message_id, int(timestamp) if timestamp.isdigit() and len(timestamp) < 12
                     else int(time.time()), body)
    return {"webhook-id": message_id, "webhook-timestamp": timestamp, "webhook-signature": signature,
            "content-type": "application/json"}


async def test_replicate_callbacks_verified_replays_ignored(web: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps({"id": "rp-unknown", "status": "succeeded"}).encode()
    async with httpx.AsyncClient(base_url=base(web)) as client:
        first = await client.post("/webhooks/replicate", content=body, headers=replicate_headers(body))
        assert first.status_code == 200 and first.json() == {"ok": True, "woke": False}
        replay = await client.post("/webhooks/replicate", content=body, headers=replicate_headers(body))
        assert replay.status_code == 200 and replay.json().get("replayed") is True
        other = await client.post("/webhooks/replicate", content=body,
                                  headers=replicate_headers(body, message_id="msg_2"))
        assert other.status_code == 200 and "replayed" not in other.json()


def malformed_replicate() -> list[tuple[str, bytes, dict[str, str], int]]:
    good = json.dumps({"id": "rp1"}).encode()
    as_list = b'[{"id": "rp1"}]'
    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        ("400-digit timestamp", good, replicate_headers(good, stamp="9" * 400), 401),
        ("no headers", good, {}, 401),
        ("wrong secret", good, replicate_headers(good, secret="whsec_" + "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA"), 401),
        ("junk signature", good, {**replicate_headers(good), "webhook-signature": "v1,a,b v9"}, 401),
        ("non-ASCII signature", good, {**replicate_headers(good), "webhook-signature": "v1,%C3%A9"}, 401),
        ("JSON list body", as_list, replicate_headers(as_list, message_id="list"), 400),
        ("not JSON", b"hello", replicate_headers(b"hello", message_id="hello"), 400),
        ("deeply nested", deep, replicate_headers(deep, message_id="deep"), 400),
        ("not UTF-8", b"\xff\xfe", {**replicate_headers(b"x", message_id="bin")}, 401),
        ("id not a string", b'{"id": 5}', replicate_headers(b'{"id": 5}', message_id="num"), 400),
    ]


async def test_malformed_replicate_callbacks_get_4xx_and_one_info_line(
        web: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.web")
    async with httpx.AsyncClient(base_url=base(web)) as client:
        for label, body, hdrs, status in malformed_replicate():
            caplog.clear()
            response = await client.post("/webhooks/replicate", content=body, headers=hdrs)
            assert response.status_code == status, label
            assert "Traceback" not in response.text
            lines = [r for r in caplog.records if r.name.startswith(("bot.web", "aiohttp"))]
            assert [(r.levelno, r.name) for r in lines] == [(logging.INFO, "bot.web")], label
        await raw_bodies_get_4xx(web, client, caplog)


async def raw_bodies_get_4xx(web: BotHarness, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    """Bodies and query strings no JSON parser sees: a 4xx and one INFO line each, never a traceback."""
    assert web.bot is not None
    raw = [("undecodable token", "/webhooks/kling?token=%ff%fe%ed%a0%80", b'{"task_id": "1"}', 401),
           ("2 MiB body", f"/webhooks/kling?token={callback_token(web.bot.settings)}", b" " * (2 << 20), 413),
           ("2 MiB replicate body", "/webhooks/replicate", b" " * (2 << 20), 413)]
    for label, target, body, status in raw:
        caplog.clear()
        response = await client.post(httpx.URL(base(web) + target), content=body)
        assert response.status_code == status, label
        lines = [r for r in caplog.records if r.name.startswith(("bot.web", "aiohttp"))]
        assert [(r.levelno, r.name) for r in lines] == [(logging.INFO, "bot.web")], label
        assert lines[0].exc_info is None


def kling_cases(token: str) -> list[tuple[str, str, bytes, int]]:
    return [
        ("non-ASCII token", "é" * 32, b'{"task_id": "1"}', 401),
        ("wrong token", "0" * 32, b'{"task_id": "1"}', 401),
        ("no token", "", b'{"task_id": "1"}', 401),
        ("JSON list body", token, b'["task_id"]', 400),
        ("JSON string body", token, b'"x"', 400),
        ("not JSON", token, b"\xff", 400),
        ("data is a list", token, b'{"data": [1]}', 400),
        ("task id is an object", token, b'{"task_id": {"a": 1}}', 400),
        ("deeply nested", token, b'{"data":' * 50_000 + b"1" + b"}" * 50_000, 400),
    ]


async def test_malformed_kling_callbacks_get_4xx_and_one_info_line(
        web: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    assert web.bot is not None
    caplog.set_level(logging.INFO, logger="bot.web")
    async with httpx.AsyncClient(base_url=base(web)) as client:
        for label, token, body, status in kling_cases(callback_token(web.bot.settings)):
            caplog.clear()
            response = await client.post("/webhooks/kling", params={"token": token}, content=body)
            assert response.status_code == status, label
            lines = [r for r in caplog.records if r.name.startswith(("bot.web", "aiohttp"))]
            assert [(r.levelno, r.name) for r in lines] == [(logging.INFO, "bot.web")], label
        await raw_bodies_get_4xx(web, client, caplog)


async def test_good_kling_callback_is_accepted(web: BotHarness) -> None:
    assert web.bot is not None
    async with httpx.AsyncClient(base_url=base(web)) as client:
        response = await client.post("/webhooks/kling", params={"token": callback_token(web.bot.settings)},
                                     json={"data": {"task_id": "t1"}})
    assert response.status_code == 200 and response.json() == {"ok": True, "woke": False}


async def test_callback_routes_are_off_without_their_secrets(server: LoopbackDiscord, tmp_path: Path) -> None:
    harness = await start(server, tmp_path)
    try:
        assert harness.bot is not None
        token = callback_token(harness.bot.settings)  # what an attacker could compute from an empty secret
        async with httpx.AsyncClient(base_url=base(harness)) as client:
            kling = await client.post("/webhooks/kling", params={"token": token}, json={"task_id": "1"})
            body = b'{"id": "x"}'
            replicate = await client.post("/webhooks/replicate", content=body, headers=replicate_headers(body))
        assert kling.status_code == 404 and replicate.status_code == 404
    finally:
        await harness.stop()


async def test_sandbox_console_serves_signed_links_only(tmp_path: Path) -> None:
    """In `make run` the console serves the videos; it applies exactly the bot's checks."""
    import asyncio

    from bot.config import Settings
    from bot.sandbox.run import start_sandbox
    from tests.e2e.harness import LoopbackDriver

    settings = Settings(database_path=tmp_path / "data" / "bot.sqlite3", video_dir=tmp_path / "data" / "videos",
                        sandbox_port=0, simulated_speed=0.002, simulated_fps=2, secret_key="sandbox-" + "x" * 32)
    server, console, bot, task = await start_sandbox(settings)
    try:
        driver = LoopbackDriver(server)
        await driver.invoke("/kling", user=server.alice, channel=server.general, prompt="A paper boat.")
        [job] = await bot.store.jobs.for_user(server.alice)
        async with asyncio.timeout(30):
            while (job := await bot.store.jobs.get(job.id)).state is not JobState.DELIVERED:
                await asyncio.sleep(0.05)
        link = bot.delivery.public_link(job)
        assert link is not None and link.startswith(console.url + "/videos/job")
        async with httpx.AsyncClient() as client:
            ok = await client.get(link)
            assert ok.status_code == 200 and ok.content == Path(job.result_path).read_bytes()
            assert (await client.get(f"{console.url}/videos/job{job.id}.mp4")).status_code == 404
            assert (await client.get(f"{console.url}/videos/..%2Fbot.sqlite3")).status_code == 404
    finally:
        await bot.close()
        task.cancel()
        await console.stop()
        await server.stop()
