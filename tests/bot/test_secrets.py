"""Secrets at rest and in logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.crypto import SecretBox
from bot.logs import RedactingFilter


def test_round_trip_and_wrong_key(tmp_path: Path) -> None:
    box = SecretBox("one")
    token = box.encrypt("sk-live-123456789")
    assert b"sk-live" not in token
    assert box.decrypt(token) == "sk-live-123456789"
    with pytest.raises(ValueError, match="SECRET_KEY") as raised:
        SecretBox("two").decrypt(token)
    assert "sk-live" not in str(raised.value)


def test_generated_key_file_is_private_and_stable(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret.key"
    first = SecretBox.from_settings(None, key_file)
    assert key_file.stat().st_mode & 0o077 == 0
    second = SecretBox.from_settings(None, key_file)
    assert second.decrypt(first.encrypt("x")) == "x"
    configured = SecretBox.from_settings(SecretStr("configured"), key_file)
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
