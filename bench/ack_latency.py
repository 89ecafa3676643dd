"""Ack latency under burst: INTERACTION_CREATE → the bot's callback, for /kling versus /ping.

/ping touches nothing but the event loop, so it is the floor; /kling validates, reserves credits
and stores a job in one SQLite transaction before answering. Target: p99 < 150 ms at 200/s and
nothing over Discord's 3 s window.
"""

from __future__ import annotations

import asyncio
import random

from bench.common import bench_bot, percentile, table
from bot.sandbox.discord import Interaction, LoopbackDiscord


async def fire(server: LoopbackDiscord, users: list[int], command: str, total: int, rate: float | None) -> list[float]:
    options = {"prompt": "A red fox runs through fresh snow."} if command == "/kling" else {}
    tasks: list[asyncio.Task[Interaction]] = []
    for _ in range(total):
        tasks.append(asyncio.create_task(server.invoke(command, user=random.choice(users), channel=server.general,
                                                       options=options)))
        if rate:
            await asyncio.sleep(1 / rate)
    interactions = await asyncio.gather(*tasks)
    async with asyncio.timeout(60):
        for interaction in interactions:
            await interaction.responded.wait()
    return [(i.acked_at or 0) - (i.sent_at or 0) for i in interactions]


async def main() -> None:
    server = LoopbackDiscord()
    await server.start()
    users = [server.add_user(f"u{n}") for n in range(50)]
    server.guilds[server.guild].members.update(users)
    bot = bench_bot(server)
    await bot.start()
    try:
        await fire(server, users, "/ping", 10, None)  # warm up
        rows = []
        for label, total, rate in (("burst of 50", 50, None), ("200 at 200/s", 200, 200.0),
                                   ("1000 at 200/s", 1000, 200.0)):
            floor = await fire(server, users, "/ping", total, rate)
            measured = await fire(server, users, "/kling", total, rate)
            for command, values in (("/ping", floor), ("/kling", measured)):
                ms = [v * 1000 for v in values]
                rows.append([label, command, len(ms), percentile(ms, 50), percentile(ms, 99), max(ms),
                             f"{sum(v > 3 for v in values) / len(values):.1%}",
                             f"{percentile(measured, 99) / max(percentile(floor, 99), 1e-9):.2f}x"
                             if command == "/kling" else "1.00x"])
        table("Ack latency (ms), real bot process, loopback Discord", ["load", "command", "n", "p50", "p99", "max",
                                                                       ">3s", "p99 vs /ping"], rows)
    finally:
        await bot.stop()
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
