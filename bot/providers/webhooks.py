"""Standard Webhooks signature checks (Replicate signs its callbacks this way).

A callback is only a wake-up for the poller (polling stays the source of truth), but a forged or
replayed one must still be refused: we check the HMAC-SHA256 over "id.timestamp.body" with the
key from the `whsec_` secret, in constant time, and reject timestamps more than five minutes
old or ahead. `webhook-signature` may list several space-separated `v1,<base64>` signatures
(senders rotating secrets); one match is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_SECONDS = 300


class WebhookError(ValueError):
    """The callback is not authentic (or too old); answer 401/400 and ignore it."""


def _key(secret: str) -> bytes:
    raw = secret.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookError("webhook secret is not valid base64") from None
    if not key:
        raise WebhookError("webhook secret is empty")
    return key


def _digest(secret: str, message_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value a sender would produce (used by tests and fakes)."""
    return "v1," + base64.b64encode(_digest(secret, message_id, timestamp, body)).decode("ascii")


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> None:
    """Raise WebhookError unless one of the signatures matches and the timestamp is fresh."""
    lowered = {key.lower(): value for key, value in headers.items()}
    message_id = lowered.get("webhook-id", "").strip()
    stamp = lowered.get("webhook-timestamp", "").strip()
    signatures = lowered.get("webhook-signature", "").strip()
    if not message_id or not stamp or not signatures:
        raise WebhookError("missing webhook headers")
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookError("bad webhook timestamp")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_SECONDS:
        raise WebhookError("webhook timestamp outside the tolerance")
    expected = _digest(secret, message_id, timestamp, body)
    matched = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue  # includes non-ASCII junk: never let it reach compare_digest as str
        matched |= hmac.compare_digest(given, expected)  # no early exit: timing says nothing about which
    if not matched:
        raise WebhookError("no matching webhook signature")
