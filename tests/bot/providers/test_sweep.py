"""Which providers sweep (list the account's tasks with their states) and which are polled one by one."""

from __future__ import annotations

import time

import pytest

from bot.config import Settings
from bot.providers.registry import ProviderRegistry
from tests.bot.providers.fakes import FakeProviders


@pytest.mark.parametrize(("name", "sweeps"), [("replicate", True), ("openai", True), ("kling", False),
                                              ("simulated", False)])
async def test_only_providers_with_a_list_endpoint_sweep(fake: FakeProviders, provider_settings: Settings,
                                                         name: str, sweeps: bool) -> None:
    """Kling documents no list of tasks (PROVIDERS.md) and the simulated provider keeps none: both say so,
    and asking them anyway is a programming error, not a provider failure the poller would retry."""
    registry = ProviderRegistry(provider_settings)
    try:
        provider = registry.get(name)
        assert provider.can_sweep is sweeps
        if sweeps:
            result = await provider.sweep(time.time() - 60, max_pages=1)
            assert result.states == {} and result.pages == 1
        else:
            with pytest.raises(NotImplementedError):
                await provider.sweep(time.time() - 60, max_pages=1)
            assert fake.seen == []
    finally:
        await registry.aclose()
