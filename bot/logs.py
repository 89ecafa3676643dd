"""Logging set-up with redaction: tokens and keys never reach a log line.

discord.py logs request URLs at debug level, and interaction/webhook URLs contain tokens; httpx
logs every request URL at INFO, and signed attachment or download URLs carry their signature in the
query string; provider errors might echo a key. The filter scrubs known secret values, common token
shapes and every URL's query string from every record, whatever logger it comes from (we keep
httpx's INFO lines: the method, path and status are useful to an operator).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from bot.logcontext import ContextFilter, JsonFormatter

PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"r8_[A-Za-z0-9]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._\-]{20,}"),
    re.compile(r"[MN][A-Za-z\d]{23,25}\.[\w-]{6}\.[\w-]{27,}"),  # Discord bot token shape
    # Query strings of any URL: Discord's signed attachment links (ex/is/hm), presigned provider downloads,
    # our callback tokens. httpx logs every request URL at INFO; the path is enough to follow what happened.
    re.compile(r"""(https?://[^\s?#"'<>]+\?)[^\s"'<>]+"""),
]


class RedactingFilter(logging.Filter):
    """Replace secrets in the rendered message of every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 6:
            self.secrets.append(secret)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        for pattern in PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(level: str, secrets: Iterable[str] = (), *, json_lines: bool = False) -> RedactingFilter:
    """Configure the root logger once; returns the filter so more secrets can be added later.

    `json_lines` (LOG_FORMAT=json): one JSON object per line, with the ids bound by `bot.logcontext`.
    """
    redactor = RedactingFilter(secrets)
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(redactor)
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # discord.py's debug output includes request URLs with tokens, aiosqlite's every SQL parameter:
    # keep both at INFO at most.
    for noisy in ("discord", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelNamesMapping()[level], logging.INFO))
    return redactor
