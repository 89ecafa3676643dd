"""The 10k bench's Replicate look-alike lists predictions as Replicate does, so the bot's sweep can run on it."""

from __future__ import annotations

import time

from pydantic import SecretStr

from bench.inflight import ReplicateLike
from bot.config import Settings
from bot.providers.base import ProviderState
from bot.providers.replicate import ReplicateProvider


async def test_the_real_adapter_sweeps_the_look_alike() -> None:
    fake = ReplicateLike()
    await fake.start()
    adapter = ReplicateProvider(Settings(replicate_api_token=SecretStr("r8_bench0000"),
                                         replicate_api_base=f"http://127.0.0.1:{fake.port}"))
    try:
        now = time.time()
        for n in range(250):  # one a second, oldest first; the even ones are still rendering
            fake.add(f"p{n}", now - 1000 + n, now + 100 if n % 2 == 0 else now - 1)
        everything = await adapter.sweep(now - 2000, max_pages=10)
        assert everything.pages == 3 and everything.reaches_back_to == now - 2000
        assert everything.states["p0"].state is ProviderState.RUNNING
        assert everything.states["p1"].state is ProviderState.SUCCEEDED
        assert len(everything.states) == 250
        fake.add("late", time.time(), now + 100)  # a new prediction does not shift the pages of a walk
        cut = await adapter.sweep(now - 2000, max_pages=2)
        assert set(cut.states) == {"late"} | {f"p{n}" for n in range(51, 250)}
        assert abs(cut.reaches_back_to - (now - 1000 + 51)) < 1e-5  # p51, the oldest read
        recent = await adapter.sweep(now - 900.5, max_pages=10)
        assert set(recent.states) == {"late"} | {f"p{n}" for n in range(100, 250)} and recent.pages == 2
        assert len(fake.list_times) == 3 + 2 + 2 and fake.status_times == []
    finally:
        await adapter.aclose()
        await fake.stop()
