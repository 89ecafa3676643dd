"""Crash consistency: SIGKILL the real bot process at each point of a job's life, restart it, and
check that nothing is lost or duplicated. Prints a table of points × outcomes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.faults import POINTS
from bot.sandbox.discord import LoopbackDiscord
from storage import JobState, LedgerKind, Store
from tests.e2e.process import BotProcess

pytestmark = pytest.mark.slow
RESULTS: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def report() -> AsyncIterator[None]:
    yield
    if RESULTS:
        width = max(len(point) for point in RESULTS)
        print("\n\n" + "crash point".ljust(width) + "  outcome after restart")
        for point, outcome in RESULTS.items():
            print(f"{point.ljust(width)}  {outcome}")


@pytest.mark.parametrize("point", [p for p in POINTS if p not in ("after_delivered", "after_refund", "after_notice",
                                                                  "after_cancel")])
async def test_kill_and_restart_loses_and_duplicates_nothing(server: LoopbackDiscord, tmp_path: Path,
                                                             point: str) -> None:
    bot = BotProcess(server, tmp_path, DISCORD_TOKEN="crash-test-discord-token", SIMULATED_SPEED="0.002",
                     SIMULATED_FPS="2", SECRET_KEY="crash-secret-key-" + "x" * 32, WORKER_ID="crash-worker", LOG_LEVEL="DEBUG")
    prompt = "Crash test [fail:content_policy]" if point == "during_refund" else "Crash test"
    await bot.start(BOT_CRASH_AT=point)
    interaction = await server.invoke("/kling", user=server.alice, channel=server.general, options={"prompt": prompt})
    assert await bot.wait_exit() == -9
    await bot.start()  # the same data directory, no crash point
    try:
        if point == "during_refund":
            await server.wait_for_message(server.general, lambda m: "failed" in m["content"], within=30)
        else:
            result = await server.wait_for_message(server.general, lambda m: "is ready" in m["content"], within=30)
        store = await Store.open(tmp_path / "bot.sqlite3")
        try:
            [job] = await store.jobs.for_user(server.alice)
            for _ in range(100):  # the final state is written right after the post
                job = await store.jobs.get(job.id)  # type: ignore[assignment]
                if job is not None and job.state.terminal:
                    break
                await asyncio.sleep(0.05)
            assert job is not None
            kinds = [entry.kind for entry in await store.ledger.entries_for_job(job.id)]
            audit = await store.ledger.audit()
        finally:
            await store.close()
        assert kinds.count(LedgerKind.RESERVE) == 1
        assert kinds.count(LedgerKind.CAPTURE) + kinds.count(LedgerKind.REFUND) == 1
        assert audit == {"balance_mismatch": 0, "negative_balance": 0, "unsettled_finished_jobs": 0,
                         "duplicate_entries": 0}
        tasks = [json.loads(path.read_text()) for path in (tmp_path / "videos" / "simulated").glob(f"sim-{job.id}-*.json")]
        assert len([task for task in tasks if not task["canceled"]]) == 1, "the provider got the job twice"
        posted = [m for m in server.messages[server.general] if f"job #{job.id}" in m["content"]]
        if point == "during_refund":
            assert job.state is JobState.FAILED and kinds[-1] is LedgerKind.REFUND
            RESULTS[point] = f"failed, refunded once, {len(posted)} notice"
        else:
            assert job.state is JobState.DELIVERED and kinds[-1] is LedgerKind.CAPTURE
            assert len(posted) == 1, "the video was posted more than once"
            rerun = await server.click(result, f"job:{job.id}:rerun", user=server.alice)
            await rerun.wait_response(within=10)
            RESULTS[point] = (f"delivered once, charged once, buttons work"
                              f"{'' if interaction.response_type else ' (ack lost with the crash)'}")
        # Secrets never reach the log, even at DEBUG: the bot token, the secret key, interaction tokens.
        log = bot.log.read_text()
        assert "job" in log  # the log is really there
        for secret in ["crash-test-discord-token", "crash-secret-key", interaction.token]:
            assert secret not in log
    finally:
        await bot.stop()
