"""A gateway process and two worker processes sharing PostgreSQL, against the loopback Discord."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.sandbox.discord import LoopbackDiscord
from storage import JobState, Store
from tests.e2e.process import BotProcess

pytestmark = pytest.mark.slow


def process(server: LoopbackDiscord, url: str, data: Path, role: str, name: str) -> BotProcess:
    return BotProcess(server, data, name=name, DATABASE_URL=url, DATABASE_PATH=str(data / name / "unused.sqlite3"),
                      SECRET_KEY="shared-secret-" + "x" * 32, BOT_ROLE=role, WORKER_ID=name, SIMULATED_SPEED="0.002",
                      SIMULATED_FPS="2", MAX_CONCURRENT_JOBS="10")


async def test_gateway_takes_commands_and_workers_deliver(server: LoopbackDiscord, location: str | Path,
                                                          tmp_path: Path) -> None:
    if not isinstance(location, str):
        pytest.skip("the split roles share PostgreSQL")
    gateway = process(server, location, tmp_path, "gateway", "gw")
    workers = [process(server, location, tmp_path, "worker", f"worker{n}") for n in (1, 2)]
    try:
        await gateway.start()
        for worker in workers:
            await worker.spawn()
        assert len(server.gateway.connections) == 1  # only the gateway process holds a gateway connection
        for n in range(6):
            interaction = await server.invoke("/kling", user=server.alice if n % 2 else server.bob,
                                              channel=server.general, options={"prompt": f"split roles {n}"})
            await interaction.wait_response()
        async with asyncio.timeout(60):
            while sum("is ready" in m["content"] for m in server.messages[server.general]) < 6:
                await asyncio.sleep(0.1)
        store = await Store.open(location)
        try:
            async with asyncio.timeout(20):
                while (await store.jobs.count_by_state()) != {JobState.DELIVERED: 6}:
                    await asyncio.sleep(0.1)
            owners = {job.provider_job_id for user in (server.alice, server.bob)
                      for job in await store.jobs.for_user(user)}
        finally:
            await store.close()
        assert len(owners) == 6
        ready = [m for m in server.messages[server.general] if "is ready" in m["content"]]
        assert len(ready) == 6 and all(m["attachments"] for m in ready)
    finally:
        for running in (gateway, *workers):
            await running.stop()


async def test_sharded_gateway_answers(server: LoopbackDiscord, tmp_path: Path) -> None:
    """SHARD_COUNT runs the bot on AutoShardedBot: two shard connections, each answering its own guilds."""
    bot = BotProcess(server, tmp_path, SHARD_COUNT="2")
    await bot.start()
    try:
        async with asyncio.timeout(30):  # shards identify one after another, as Discord paces them
            while {connection.shard for connection in server.gateway.connections} != {(0, 2), (1, 2)}:
                await asyncio.sleep(0.05)
        other = server.add_guild("Second guild")  # lands on whichever shard Discord's formula says
        await server.broadcast("GUILD_CREATE", server.guild_payload(other))
        room = server.add_channel(other, "room")
        for channel in (server.general, room, server.dm_channel(server.bob)):
            interaction = await server.invoke("/ping", user=server.bob, channel=channel)
            await interaction.wait_response()
            assert "Pong" in str(interaction.response) and interaction.error is None
    finally:
        await bot.stop()
