"""LOG_FORMAT=json: one object per line, the task's ids attached, secrets still scrubbed; bad values refused."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from bot import logcontext
from bot.config import Settings, describe_validation_error
from bot.logs import setup_logging

SECRET = "sk-live-abcdefghijklmnop"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_json_lines_carry_each_tasks_ids_and_no_secrets(restore_root: None,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", [SECRET], json_lines=True)
    log = logging.getLogger("test.ops")

    async def job(job_id: int, user_id: int) -> None:
        logcontext.bind(job_id=job_id, user_id=user_id)
        await asyncio.sleep(0)  # the other task runs in between: ids must not leak across tasks
        log.info("step of job %s with key %s", job_id, SECRET)

    await asyncio.gather(job(1, 10), job(2, 20))
    try:
        raise ValueError(f"boom {SECRET}")
    except ValueError:
        log.exception("outside any job")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["job_id"], e["user_id"]) for e in lines[:2]] == [(1, 10), (2, 20)]
    assert all(e["message"].startswith(f"step of job {e['job_id']} ") for e in lines[:2])
    last = lines[2]
    assert "job_id" not in last and last["level"] == "ERROR" and "ValueError" in last["exc"]
    assert SECRET not in json.dumps(lines) and "[redacted]" in last["exc"]


def test_text_stays_the_default_and_a_bad_format_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert Settings(_env_file=None).log_format == "text"
    assert Settings(_env_file=None, log_format="JSON").log_format == "json"
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, log_format="xml")
    line = describe_validation_error(raised.value)
    assert line.startswith("Invalid setting LOG_FORMAT:") and "\n" not in line
