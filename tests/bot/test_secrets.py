"""Secrets at rest and in logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.crypto import SecretBox, SecretKeyError
from bot.logs import RedactingFilter


def test_round_trip_and_wrong_key(tmp_path: Path) -> None:
    box = SecretBox("one" * 11)
    token = box.encrypt("sk-live-123456789")
    assert b"sk-live" not in token
    assert box.decrypt(token) == "sk-live-123456789"
    with pytest.raises(ValueError, match="SECRET_KEY") as raised:
        SecretBox("two" * 11).decrypt(token)
    assert "sk-live" not in str(raised.value)


def test_generated_key_file_is_private_and_stable(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret.key"
    first = SecretBox.from_settings(None, key_file)
    assert key_file.stat().st_mode & 0o077 == 0
    second = SecretBox.from_settings(None, key_file)
    assert second.decrypt(first.encrypt("x")) == "x"
    configured = SecretBox.from_settings(SecretStr("configured" * 4), key_file)
    with pytest.raises(ValueError):
        configured.decrypt(first.encrypt("x"))


def test_redaction_of_known_values_and_token_shapes(caplog: pytest.LogCaptureFixture) -> None:
    redactor = RedactingFilter(["my-discord-token-value"])
    logger = logging.getLogger("test.redact")
    logger.addFilter(redactor)
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("token %s", "my-discord-token-value")
        logger.info("key sk-proj-abcdefghijklmnop in error")
        logger.info("POST /api/v10/webhooks/123/aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTA/messages")
        logger.info("Authorization: Bearer abcdefghijklmnopqrstuvwxyz")
        try:
            raise RuntimeError("boom sk-proj-zzzzzzzzzzzzzzzzzz")
        except RuntimeError:
            logger.exception("failed")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    for secret in ("my-discord-token-value", "sk-proj-abc", "aW50ZXJhY3Rpb246", "abcdefghijklmnopqrstuvwxyz",
                   "sk-proj-zzz"):
        assert secret not in text
    assert text.count("[redacted]") >= 5


@pytest.mark.parametrize("content", ["", "\n", "short-key", "x" * 31])
def test_empty_or_short_key_file_is_refused(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(content)
    key_file.chmod(0o600)
    with pytest.raises(SecretKeyError) as raised:
        SecretBox.from_settings(None, key_file)
    assert str(key_file) in str(raised.value) and "\n" not in str(raised.value)
    assert key_file.read_text() == content  # never overwritten: data may be encrypted with it


def test_key_file_is_created_atomically_and_never_replaced(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret.key"
    SecretBox.from_settings(None, key_file)
    material = key_file.read_text()
    assert len(material.encode()) >= 32
    assert os.listdir(key_file.parent) == ["secret.key"]  # no temporary file left behind
    from bot.crypto import _create_key_file

    _create_key_file(key_file)  # a second process racing the first: the first key stays
    assert key_file.read_text() == material and os.listdir(key_file.parent) == ["secret.key"]


def test_wide_key_file_mode_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("k" * 40)
    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="bot.crypto"):
        SecretBox.from_settings(None, key_file)
    assert any("644" in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records)
    assert "k" * 40 not in caplog.text
    caplog.clear()
    key_file.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="bot.crypto"):
        SecretBox.from_settings(None, key_file)
    assert not caplog.records


def test_bot_refuses_to_start_with_a_short_key_file(tmp_path: Path) -> None:
    """`python -m bot` (the sandbox, no token) stops with one line naming the file, and exit code 2."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret.key").write_text("")
    env = {**os.environ, "DATABASE_PATH": str(tmp_path / "data" / "bot.sqlite3"), "VIDEO_DIR": str(tmp_path / "v"),
           "SANDBOX_PORT": "0", "DISCORD_TOKEN": "", "SECRET_KEY": "", "LOG_LEVEL": "ERROR"}
    done = subprocess.run([sys.executable, "-m", "bot"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Cannot start:") and "secret.key" in lines[0]


async def test_httpx_request_logs_keep_no_query_string(capsys: pytest.CaptureFixture[str]) -> None:
    """A real httpx request to a loopback server, logged through the bot's logging set-up."""
    import httpx
    from aiohttp import web

    from bot.logs import setup_logging

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="png")

    app = web.Application()
    app.router.add_get("/attachments/1/cat.png", ok)
    runner = web.AppRunner(app, access_log=None)  # the test server's own log is not the bot's
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{port}/attachments/1/cat.png?ex=6745&is=6744&hm=d3adb33fsignature0123456789"
            assert (await client.get(url)).status_code == 200
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        await runner.cleanup()
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}/attachments/1/cat.png?[redacted]" in err  # the request is still logged
    assert "d3adb33f" not in err and "ex=6745" not in err
