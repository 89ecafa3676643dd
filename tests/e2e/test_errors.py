"""The error handler: a command or button that raises answers ephemerally with a reference id that
is also in the log line carrying the traceback."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from bot.logcontext import ContextFilter, JsonFormatter
from bot.logs import RedactingFilter
from storage import JobState
from tests.e2e.harness import BotHarness


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The bot's log as LOG_FORMAT=json writes it (same filters and formatter), captured."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def entries(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def reference_in(text: str) -> str:
    found = re.search(r"reference `([0-9a-f]{8})`", text)
    assert found, text
    return found[1]


async def test_a_command_that_raises_answers_with_a_reference_that_is_in_the_log(harness: BotHarness,
                                                                                  json_log: io.StringIO) -> None:
    assert harness.bot is not None
    await harness.bot.store.db.close()  # the database goes away under the bot
    interaction = await harness.invoke("/credits", user=harness.server.alice)
    text = harness.ephemeral_text(interaction)  # asserts the answer is ephemeral
    assert "did not respond" not in text and "went wrong" in text
    reference = reference_in(text)
    [logged] = [entry for entry in entries(json_log) if entry.get("ref") == reference]
    assert logged["level"] == "ERROR" and "/credits" in logged["message"] and reference in logged["message"]
    assert "Traceback" in logged["exc"] and "database is not connected" in logged["exc"]
    assert logged["interaction_id"] == int(interaction.id)
    assert logged["user_id"] == harness.server.alice


async def test_a_button_that_raises_answers_with_a_reference(harness: BotHarness, json_log: io.StringIO) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="A paper boat.", duration=5)
    [job] = await bot.store.jobs.for_user(server.alice)
    await harness.wait_job(job.id, JobState.DELIVERED)
    result = await harness.wait_for_message(server.general, lambda m: f"job #{job.id})" in m["content"])
    await bot.store.db.close()
    click = await server.click(result, f"job:{job.id}:rerun", user=server.alice)
    await click.wait_response()
    text = harness.ephemeral_text(click)
    reference = reference_in(text)
    [logged] = [entry for entry in entries(json_log) if entry.get("ref") == reference]
    assert "rerun button" in logged["message"] and "Traceback" in logged["exc"]
    assert logged["job_id"] == job.id and logged["interaction_id"] == int(click.id)


@pytest.mark.settings(simulated_speed=1.0)
async def test_a_provider_that_fails_to_cancel_is_logged(harness: BotHarness, caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server, bot = harness.server, harness.bot
    assert bot is not None
    await harness.invoke("/kling", user=server.alice, channel=server.general, prompt="A slow sunrise.", duration=5)
    [job] = await bot.store.jobs.for_user(server.alice)
    await harness.wait_job(job.id, JobState.SUBMITTED, JobState.RUNNING)

    async def broken_cancel(*args: object) -> bool:
        raise RuntimeError("provider cancel exploded")

    monkeypatch.setattr(bot.providers.get("simulated"), "cancel", broken_cancel)
    ask = await harness.invoke("/job cancel", user=server.alice, id=job.id)
    interaction = await harness.click(harness.response_message(ask), f"job:{job.id}:stop", user=server.alice)
    assert "canceled" in harness.ephemeral_text(interaction)
    assert "charged" in harness.ephemeral_text(interaction)  # the stop was not confirmed: no free render
    [record] = [r for r in caplog.records if r.name == "bot.service" and f"job {job.id}" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info and "exploded" in str(record.exc_info[1])
