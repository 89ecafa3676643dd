"""Fixtures: a loopback Discord per test, and the real bot logged in to it.

When Discord's OpenAPI description is available (tests/discord_spec.py), the loopback Discord checks every
request body it receives against it, whoever sends it (the real bot, its worker processes, toy clients), and
the test fails at teardown on any violation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sandbox.discord import LoopbackDiscord
from tests.discord_spec import SpecChecker, load_spec
from tests.e2e.harness import BotHarness, FakeClock, LoopbackDriver, assert_videos_fast_start, e2e_settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spec_checker() -> SpecChecker | None:
    """Validates request bodies against Discord's description; None when the description is absent."""
    spec = load_spec()
    return SpecChecker(spec) if spec is not None else None


@pytest.fixture
async def server(clock: FakeClock, spec_checker: SpecChecker | None) -> AsyncIterator[LoopbackDiscord]:
    discord_server = LoopbackDiscord(clock=clock)
    if spec_checker is not None:
        discord_server.rest.body_checks.append(spec_checker)
    await discord_server.start()
    try:
        yield discord_server
    finally:
        await discord_server.stop()
    assert_videos_fast_start(discord_server)
    if spec_checker is not None:
        assert not spec_checker.violations, "request bodies Discord would refuse:\n" + "\n".join(
            spec_checker.violations)


@pytest.fixture
def loopback(server: LoopbackDiscord) -> LoopbackDriver:
    """Discord's users acting on the loopback server (invoke, click, submit_modal, wait_for_message)."""
    return LoopbackDriver(server)


@pytest.fixture(name="discord")
def discord_fixture(loopback: LoopbackDriver) -> LoopbackDriver:
    """The same driver under the name the brief asked for; it shadows the `discord` module inside a test."""
    return loopback


@pytest.fixture
async def harness(server: LoopbackDiscord, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[BotHarness]:
    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs) if marker else {}
    running = BotHarness(server=server, settings=e2e_settings(tmp_path, server, **overrides))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
