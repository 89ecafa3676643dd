"""Standard Webhooks verification."""

from __future__ import annotations

import base64

import pytest

from bot.providers.webhooks import WebhookError, sign, verify

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BODY = b'{"id": "rp000001", "status": "succeeded"}'
NOW = 1_800_000_000


def headers(signature: str, *, message_id: str = "msg_1", timestamp: int = NOW) -> dict[str, str]:
    return {"Webhook-Id": message_id, "Webhook-Timestamp": str(timestamp), "Webhook-Signature": signature}


def test_good_signature_passes() -> None:
    verify(SECRET, headers(sign(SECRET, "msg_1", NOW, BODY)), BODY, now=NOW + 10)


def test_one_of_several_signatures_may_match() -> None:
    good = sign(SECRET, "msg_1", NOW, BODY)
    verify(SECRET, headers(f"v1,AAAA {good}"), BODY, now=NOW)


@pytest.mark.parametrize(
    ("hdrs", "body", "now"),
    [
        (headers(sign(SECRET, "msg_1", NOW, BODY)), BODY + b" ", NOW),  # tampered body
        (headers(sign(SECRET, "msg_2", NOW, BODY)), BODY, NOW),  # signature of another message
        (headers(sign("whsec_" + base64.b64encode(b"x" * 32).decode(), "msg_1", NOW, BODY)), BODY, NOW),  # wrong key
        (headers(sign(SECRET, "msg_1", NOW, BODY)), BODY, NOW + 301),  # too old
        (headers(sign(SECRET, "msg_1", NOW, BODY)), BODY, NOW - 301),  # from the future
        ({"Webhook-Id": "msg_1"}, BODY, NOW),  # missing headers
        (headers("v2," + sign(SECRET, "msg_1", NOW, BODY).split(",")[1]), BODY, NOW),  # unknown version
        (headers(sign(SECRET, "msg_1", NOW, BODY), timestamp=0) | {"Webhook-Timestamp": "soon"}, BODY, NOW),
    ],
)
def test_bad_callbacks_are_refused(hdrs: dict[str, str], body: bytes, now: int) -> None:
    with pytest.raises(WebhookError):
        verify(SECRET, hdrs, body, now=now)
