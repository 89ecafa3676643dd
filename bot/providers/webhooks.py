"""Standard Webhooks signature checks (Replicate signs its callbacks this way).

A callback is only a wake-up for the poller (polling stays the source of truth), but a forged or
replayed one must still be refused: we check the HMAC over "id.timestamp.body" with the `whsec_`
secret, in constant time, and reject timestamps more than five minutes away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_SECONDS = 300


class WebhookError(ValueError):
    """The callback is not authentic (or too old); answer 401/400 and ignore it."""


def _key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise WebhookError("webhook secret is not valid base64") from None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value a sender would produce (used by tests and fakes)."""
    digest = hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> None:
    """Raise WebhookError unless one of the signatures matches and the timestamp is fresh."""
    lowered = {key.lower(): value for key, value in headers.items()}
    message_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not message_id or not stamp or not signatures:
        raise WebhookError("missing webhook headers")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookError("bad webhook timestamp") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_SECONDS:
        raise WebhookError("webhook timestamp outside the tolerance")
    expected = sign(secret, message_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise WebhookError("no matching webhook signature")
