"""Standard Webhooks verification."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from bot.providers.webhooks import TOLERANCE_SECONDS, WebhookError, sign, verify

RAW_KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(RAW_KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()
BODY = b'{"id": "rp000001", "status": "succeeded"}'
NOW = 1_800_000_000


def headers(signature: str, *, message_id: str = "msg_1", timestamp: int | str = NOW) -> dict[str, str]:
    return {"Webhook-Id": message_id, "Webhook-Timestamp": str(timestamp), "Webhook-Signature": signature}


def test_sign_follows_the_standard() -> None:
    """Computed independently: HMAC-SHA256 over "id.timestamp.body" with the base64-decoded key."""
    digest = hmac.new(RAW_KEY, b"msg_1.1800000000." + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "msg_1", NOW, BODY) == "v1," + base64.b64encode(digest).decode()


def test_good_signature_passes() -> None:
    verify(SECRET, headers(sign(SECRET, "msg_1", NOW, BODY)), BODY, now=NOW + 10)
    verify(SECRET, {k.lower(): v for k, v in headers(sign(SECRET, "msg_1", NOW, BODY)).items()}, BODY, now=NOW)


def test_edges_of_the_tolerance() -> None:
    good = headers(sign(SECRET, "msg_1", NOW, BODY))
    verify(SECRET, good, BODY, now=NOW + TOLERANCE_SECONDS)
    verify(SECRET, good, BODY, now=NOW - TOLERANCE_SECONDS)


def test_one_of_several_signatures_may_match() -> None:
    good = sign(SECRET, "msg_1", NOW, BODY)
    verify(SECRET, headers(f"v1,AAAA {good}"), BODY, now=NOW)
    verify(SECRET, headers(f"{sign(OTHER, 'msg_1', NOW, BODY)} {good} v1a,xyz"), BODY, now=NOW)  # rotated secret


def test_secret_without_prefix_is_the_same_key() -> None:
    verify(SECRET.removeprefix("whsec_"), headers(sign(SECRET, "msg_1", NOW, BODY)), BODY, now=NOW)


@pytest.mark.parametrize(
    ("hdrs", "body", "now"),
    [
        (headers(sign(SECRET, "msg_1", NOW, BODY)), BODY + b" ", NOW),  # tampered body
        (headers(sign(SECRET, "msg_1", NOW, BODY)), BODY.replace(b"succeeded", b"failed"), NOW),
        (headers(sign(SECRET, "msg_2", NOW, BODY)), BODY, NOW),  # signature of another message
        (headers(sign(SECRET, "msg_1", NOW + 1, BODY)), BODY, NOW),  # signature for another time
        (headers(sign(OTHER, "msg_1", NOW, BODY)), BODY, NOW),  # wrong secret
        (headers(sign(SECRET, "msg_1", NOW, BODY)), BODY, NOW + TOLERANCE_SECONDS + 1),  # too old
        (headers(sign(SECRET, "msg_1", NOW, BODY)), BODY, NOW - TOLERANCE_SECONDS - 1),  # from the future
        ({"Webhook-Id": "msg_1"}, BODY, NOW),  # missing headers
        ({"Webhook-Id": "msg_1", "Webhook-Timestamp": str(NOW)}, BODY, NOW),  # no signature
        (headers(""), BODY, NOW),
        (headers("v2," + sign(SECRET, "msg_1", NOW, BODY).split(",")[1]), BODY, NOW),  # unknown version
        (headers(sign(SECRET, "msg_1", NOW, BODY).split(",")[1]), BODY, NOW),  # no version at all
        (headers(sign(SECRET, "msg_1", NOW, BODY), timestamp="soon"), BODY, NOW),
        (headers(sign(SECRET, "msg_1", NOW, BODY), timestamp=f"{NOW:_}"), BODY, NOW),  # int() would accept it
        (headers("v1,\u00e9\u00e9\u00e9\u00e9"), BODY, NOW),  # non-ASCII junk must not crash compare_digest
        (headers("v1,not base64!"), BODY, NOW),
        (headers("v1," + base64.b64encode(b"short").decode()), BODY, NOW),
    ],
)
def test_bad_callbacks_are_refused(hdrs: dict[str, str], body: bytes, now: int) -> None:
    with pytest.raises(WebhookError):
        verify(SECRET, hdrs, body, now=now)


def test_unusable_secret_is_refused() -> None:
    with pytest.raises(WebhookError):
        verify("whsec_***not-base64***", headers("v1,AAAA"), BODY, now=NOW)
    with pytest.raises(WebhookError):
        verify("whsec_", headers("v1,AAAA"), BODY, now=NOW)
