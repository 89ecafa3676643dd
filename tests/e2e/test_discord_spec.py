"""The REAL bot's request bodies against Discord's OpenAPI description.

The `server` fixture validates every body it receives (tests/discord_spec.py) in the whole e2e suite; these
tests make sure the real bot's main paths were among them, and that a body Discord would refuse is caught.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.discord_spec import SpecChecker
from tests.e2e.harness import BotHarness
from tests.e2e.test_video import is_result, job_ids


@pytest.fixture
def checker(spec_checker: SpecChecker | None) -> SpecChecker:
    if spec_checker is None:
        pytest.skip("Discord's OpenAPI description is not in ../shared/specs (see tests/discord_spec.py)")
    return spec_checker


async def test_the_real_bots_bodies_are_valid(harness: BotHarness, checker: SpecChecker) -> None:
    server = harness.server
    await harness.invoke("/kling", prompt="A lighthouse in the fog.", duration=5)
    [job_id] = await job_ids(harness, server.alice)
    await harness.wait_for_message(server.general, is_result(job_id))
    refused = await harness.invoke("/credits-grant", user=server.bob, options={"user": server.alice, "amount": 5})
    assert refused.response_type == 4  # a refusal, answered ephemerally
    await harness.invoke("/credits", user=server.bob)
    checked = set(checker.checked)
    for route in ("PUT /applications/{application_id}/commands",
                  "POST /interactions/{interaction_id}/{interaction_token}/callback"):
        assert route in checked, sorted(checked)
    assert any(route.startswith(("PATCH /webhooks/", "POST /webhooks/", "POST /channels/")) for route in checked), \
        sorted(checked)
    assert checker.violations == []


async def test_a_body_discord_would_refuse_is_reported(harness: BotHarness, checker: SpecChecker) -> None:
    server = harness.server
    async with aiohttp.ClientSession() as http, http.post(f"{server.api_base}/channels/{server.general}/messages",
                         json={"content": 5, "tts": "maybe"}) as response:
        await response.read()
    assert len(checker.violations) == 1 and f"/channels/{server.general}/messages" in checker.violations[0]
    checker.violations.clear()  # expected here: the fixture would fail the test at teardown otherwise
