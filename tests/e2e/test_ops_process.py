"""The real `python -m bot` process, seen from outside: JSON logs with context ids, /metrics and /healthz."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.sandbox.discord import LoopbackDiscord
from tests.e2e.process import BotProcess

pytestmark = pytest.mark.slow


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def web_port(bot: BotProcess) -> int:
    for _ in range(200):
        for entry in json_lines(bot.log):
            found = re.search(r"http://127\.0\.0\.1:(\d+) \(/metrics", entry["message"])
            if found:
                return int(found[1])
        await asyncio.sleep(0.05)
    raise AssertionError("the bot never logged its web address")


async def test_json_logs_metrics_and_health_of_a_running_process(server: LoopbackDiscord, tmp_path: Path) -> None:
    bot = BotProcess(server, tmp_path, LOG_FORMAT="json", LOG_LEVEL="INFO", SIMULATED_SPEED="0.002",
                     SIMULATED_FPS="2")
    await bot.start()
    try:
        port = await web_port(bot)
        interaction = await server.invoke("/kling", user=server.alice, channel=server.general,
                                          options={"prompt": "A kite over the dunes", "duration": 5})
        await server.wait_for_message(server.general, lambda m: "is ready" in m["content"], within=30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):  # the delivered state is written right after the post
                text = (await client.get("/metrics")).text
                if 'outcome="delivered"' in text:
                    break
                await asyncio.sleep(0.05)
            health = await client.get("/healthz")
            for _ in range(200):  # ready once discord.py has its guilds (it waits for them after READY)
                ready = await client.get("/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.05)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        key = ("videobot_jobs_total", (("model", "kling"), ("outcome", "delivered"), ("provider", "simulated")))
        assert samples[key] == 1
        assert samples[("videobot_credits_total", (("kind", "spent"),))] == 10
        assert health.status_code == 200 and ready.status_code == 200, ready.text
    finally:
        await bot.stop()
    entries = json_lines(bot.log)
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    [submitted] = [entry for entry in entries if " submitted to simulated" in entry["message"]]
    assert submitted["user_id"] == server.alice
    assert submitted["interaction_id"] == int(interaction.id)
    assert submitted["message"].startswith(f"job {submitted['job_id']} ")
