"""Standard Webhooks verification (Replicate signs its callbacks this way), on the reference library.

`standardwebhooks` does the cryptography (HMAC-SHA256 over "id.timestamp.body", several
space-separated `v1,` signatures for rotated secrets, five minutes' tolerance, unpadded `whsec_`
secrets). Around it we only make every malformed request a `WebhookError` (the library lets
some junk through as ValueError, UnicodeDecodeError or a tuple-unpacking error), require a
plain decimal timestamp (its float parsing would accept "1e9" or "1_800_000_000" as the signed
value), and remember message ids for the tolerance window so a replayed callback is ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TOLERANCE_SECONDS = 300  # the library's window; ids are remembered this long (plus a margin)
MAX_ID_LENGTH = 256
MAX_REMEMBERED = 100_000  # only authentic messages are remembered, so this bounds a honest sender's burst


class WebhookError(ValueError):
    """The callback is not authentic (or too old or malformed); answer 4xx and ignore it."""


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value a sender would produce (used by tests and fakes)."""
    return Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body.decode())


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> str:
    """Return the message id when one signature matches and the timestamp is fresh; else raise WebhookError."""
    lowered = {key.lower(): value for key, value in headers.items()}
    message_id = lowered.get("webhook-id", "").strip()
    stamp = lowered.get("webhook-timestamp", "").strip()
    signatures = lowered.get("webhook-signature", "").strip()
    if not message_id or not stamp or not signatures:
        raise WebhookError("missing webhook headers")
    if len(message_id) > MAX_ID_LENGTH or not message_id.isascii():
        raise WebhookError("bad webhook id")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise WebhookError("bad webhook timestamp")
    # A list that is not "v1,<sig> v1,<sig>" makes the library fail on tuple unpacking: keep only well-formed ones.
    candidates = [part for part in signatures.split() if part.isascii() and part.count(",") == 1]
    if not candidates:
        raise WebhookError("no well-formed webhook signature")
    try:
        text = body.decode("utf-8")
        Webhook(secret).verify(text, {"webhook-id": message_id, "webhook-timestamp": stamp,
                                      "webhook-signature": " ".join(candidates)}, json_parse=False)
    except WebhookVerificationError as error:
        raise WebhookError(str(error).lower()) from None
    except ValueError:  # bad base64 in a signature, a body that is not UTF-8, an unusable secret
        raise WebhookError("malformed webhook signature or body") from None
    return message_id


class ReplayGuard:
    """Message ids seen within the tolerance window (per process: a replay to another process only wakes
    the poller once more, which is harmless because polling stays the source of truth)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[str, float] = {}

    def first_time(self, message_id: str) -> bool:
        """Record `message_id`; False when it was already seen within the window."""
        now = self.clock()
        if len(self._seen) >= MAX_REMEMBERED or next(iter(self._seen.values()), now) < now:
            self._seen = {key: until for key, until in self._seen.items() if until >= now}
        if self._seen.get(message_id, -1.0) >= now:
            return False
        self._seen[message_id] = now + 2 * TOLERANCE_SECONDS
        return True
