"""The sandbox remembers: a restart on the same data folder shows the same guild, people, channel and
messages, the files still download, balances are where they were, and a button from before the restart works."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from bot.sandbox.discord import LoopbackDiscord
from bot.sandbox.run import start_sandbox
from tests.e2e.test_video import is_result, video_attachments


def sandbox_settings(data: Path) -> Settings:
    return Settings(database_path=data / "bot.sqlite3", video_dir=data / "videos", sandbox_dir=data / "sandbox",
                    sandbox_port=0, web_port=0, simulated_speed=0.002, simulated_fps=2, secret_key="restart-" + "x" * 32)


async def stop(server: LoopbackDiscord, console: Any, bot: Any, task: asyncio.Task[None]) -> None:
    await bot.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await console.stop()
    await server.stop()


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, url
        return await response.read()


async def test_the_world_survives_a_restart(tmp_path: Path) -> None:
    settings = sandbox_settings(tmp_path / "data")
    server, console, bot, task = await start_sandbox(settings)
    try:
        assert not server.restored
        await (await server.invoke("/kling", user=server.alice, channel=server.general,
                                   options={"prompt": "A kite over the dunes."})).wait_response()
        [job] = await bot.store.jobs.for_user(server.alice)
        result = await server.wait_for_message(server.general, is_result(job.id), within=30)
        [video] = video_attachments(result)
        video_bytes = await fetch(video["url"])
        balance = await bot.store.ledger.balance(server.alice)
        before = {"general": server.general, "alice": server.alice, "guild": server.guild, "app": server.app_id,
                  "messages": [m["id"] for m in server.messages[server.general]]}
    finally:
        await stop(server, console, bot, task)
    saved = json.loads((tmp_path / "data" / "sandbox" / "world.json").read_text())
    assert saved["named"]["general"] == before["general"]

    server, console, bot, task = await start_sandbox(settings)
    try:
        assert server.restored
        after = {"general": server.general, "alice": server.alice, "guild": server.guild, "app": server.app_id,
                 "messages": [m["id"] for m in server.messages[server.general]]}
        assert after == before
        assert await bot.store.ledger.balance(server.alice) == balance
        old_result = server.find_message(int(result["id"]), server.general)
        [video] = video_attachments(old_result)
        assert video["url"].startswith(server.base_url + "/")  # moved to the new address
        assert await fetch(video["url"]) == video_bytes
        rerun = await server.click(old_result, "Rerun", user=server.alice)
        await rerun.wait_response()
        assert rerun.error is None and rerun.response_type is not None
        async with asyncio.timeout(30):
            while len(await bot.store.jobs.for_user(server.alice)) < 2:
                await asyncio.sleep(0.05)
        [second] = [j for j in await bot.store.jobs.for_user(server.alice) if j.id != job.id]
        await server.wait_for_message(server.general, is_result(second.id), within=30)
    finally:
        await stop(server, console, bot, task)


@pytest.mark.parametrize("saved", ['{"format": 99}', "{not json", '{"format": 1, "app_id": 5, "bot_user": {}, "named": {}}'])
async def test_an_unreadable_world_is_set_aside_and_the_sandbox_starts_afresh(tmp_path: Path, saved: str) -> None:
    folder = tmp_path / "sandbox"
    folder.mkdir()
    (folder / "world.json").write_text(saved)
    server = LoopbackDiscord(data_dir=folder)
    assert not server.restored and server.app_id != 5  # nothing of a half-read snapshot was kept
    assert server.general in server.channels and server.guild in server.guilds
    assert (folder / "world.unreadable.json").read_text() == saved


async def test_saves_are_debounced_and_atomic(tmp_path: Path) -> None:
    server = LoopbackDiscord(data_dir=tmp_path)
    await server.start()
    try:
        assert server.store is not None
        for n in range(20):
            server.add_channel(server.guild, f"room-{n}")
        assert server.store.saves == 0  # a burst of changes waits for the quiet period
        async with asyncio.timeout(5):
            while server.store.saves == 0:
                await asyncio.sleep(0.05)
        assert server.store.saves == 1
        role = server.add_role(server.guild, "sora-ok", {server.alice})
        server.team_members = [server.bob]
        server.store.flush()
        again = LoopbackDiscord(data_dir=tmp_path)
        assert again.restored and again.guilds[server.guild].roles[role].members == {server.alice}
        assert again.team_members == [server.bob]
        assert again.guild_payload(server.guild)["roles"] == server.guild_payload(server.guild)["roles"]
        assert sorted(path.name for path in tmp_path.iterdir()) == ["attachments", "world.json"]  # no temporary file
        assert len(json.loads((tmp_path / "world.json").read_text())["channels"]) == 21
    finally:
        await server.stop()


async def test_an_unusable_sandbox_dir_stops_the_start_with_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "data" / "sandbox"
    taken.parent.mkdir()
    taken.write_text("a file where the folder should be")
    with pytest.raises(SystemExit, match=r"^SANDBOX_DIR=.*sandbox cannot be used: "):
        await start_sandbox(sandbox_settings(tmp_path / "data"))
