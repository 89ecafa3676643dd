"""Standard Webhooks verification (the reference library, with our guards for malformed input)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from bot.providers.webhooks import TOLERANCE_SECONDS, ReplayGuard, WebhookError, sign, verify

RAW_KEY = b"0123456789abcdef0123456789abcde"  # 31 bytes: its base64 has padding to drop
SECRET = "whsec_" + base64.b64encode(RAW_KEY).decode()
UNPADDED = SECRET.rstrip("=")
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()
BODY = b'{"id": "rp000001", "status": "succeeded"}'


def now() -> int:
    return int(time.time())


def headers(signature: str, *, message_id: str = "msg_1", timestamp: int | str | None = None) -> dict[str, str]:
    stamp = now() if timestamp is None else timestamp
    return {"Webhook-Id": message_id, "Webhook-Timestamp": str(stamp), "Webhook-Signature": signature}


def test_sign_follows_the_standard() -> None:
    """Computed independently: HMAC-SHA256 over "id.timestamp.body" with the base64-decoded key."""
    digest = hmac.new(RAW_KEY, b"msg_1.1800000000." + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "msg_1", 1_800_000_000, BODY) == "v1," + base64.b64encode(digest).decode()


def test_good_signature_passes_and_returns_the_id() -> None:
    stamp = now()
    assert verify(SECRET, headers(sign(SECRET, "msg_1", stamp, BODY), timestamp=stamp), BODY) == "msg_1"
    lower = {k.lower(): v for k, v in headers(sign(SECRET, "msg_1", stamp, BODY), timestamp=stamp).items()}
    assert verify(SECRET, lower, BODY) == "msg_1"


def test_unpadded_and_unprefixed_secrets_are_the_same_key() -> None:
    assert UNPADDED != SECRET
    stamp = now()
    good = headers(sign(SECRET, "msg_1", stamp, BODY), timestamp=stamp)
    assert verify(UNPADDED, good, BODY) == "msg_1"
    assert verify(SECRET.removeprefix("whsec_"), good, BODY) == "msg_1"


def test_near_edges_of_the_tolerance() -> None:
    for stamp in (now() - TOLERANCE_SECONDS + 30, now() + TOLERANCE_SECONDS - 30):
        verify(SECRET, headers(sign(SECRET, "msg_1", stamp, BODY), timestamp=stamp), BODY)


def test_one_of_several_signatures_may_match() -> None:
    stamp = now()
    good = sign(SECRET, "msg_1", stamp, BODY)
    verify(SECRET, headers(f"v1,AAAA {good}", timestamp=stamp), BODY)
    verify(SECRET, headers(f"{sign(OTHER, 'msg_1', stamp, BODY)} {good} v1a,xyz", timestamp=stamp), BODY)
    verify(SECRET, headers(f"garbage,,, {good}", timestamp=stamp), BODY)  # a malformed entry doesn't hide a good one


def bad_cases() -> list[tuple[dict[str, str], bytes]]:
    t = now()
    good = sign(SECRET, "msg_1", t, BODY)
    return [
        (headers(good, timestamp=t), BODY + b" "),  # tampered body
        (headers(good, timestamp=t), BODY.replace(b"succeeded", b"failed")),
        (headers(sign(SECRET, "msg_2", t, BODY), timestamp=t), BODY),  # signature of another message
        (headers(sign(SECRET, "msg_1", t + 1, BODY), timestamp=t), BODY),  # signature for another time
        (headers(sign(OTHER, "msg_1", t, BODY), timestamp=t), BODY),  # wrong secret
        (headers(sign(SECRET, "msg_1", t - TOLERANCE_SECONDS - 60, BODY), timestamp=t - TOLERANCE_SECONDS - 60), BODY),
        (headers(sign(SECRET, "msg_1", t + TOLERANCE_SECONDS + 60, BODY), timestamp=t + TOLERANCE_SECONDS + 60), BODY),
        ({"Webhook-Id": "msg_1"}, BODY),  # missing headers
        ({"Webhook-Id": "msg_1", "Webhook-Timestamp": str(t)}, BODY),  # no signature
        (headers(""), BODY),
        (headers("v2," + good.split(",")[1], timestamp=t), BODY),  # unknown version
        (headers(good.split(",")[1], timestamp=t), BODY),  # no version at all
        (headers(good, timestamp="soon"), BODY),
        (headers(good, timestamp=f"{t:_}"), BODY),  # float() would accept it
        (headers(good, timestamp=f"{t}.0"), BODY),
        (headers(good, timestamp="9" * 400), BODY),  # a 400-digit timestamp
        (headers(good, timestamp="1e400"), BODY),
        (headers("v1,\u00e9\u00e9\u00e9\u00e9", timestamp=t), BODY),  # non-ASCII junk
        (headers("v1,not base64!", timestamp=t), BODY),
        (headers("v1,a,b,c", timestamp=t), BODY),  # the library would crash unpacking this
        (headers("v1," + base64.b64encode(b"short").decode(), timestamp=t), BODY),
        (headers(good, timestamp=t), b"\xff\xfe not utf-8"),
        (headers(good, message_id="m" * 1000, timestamp=t), BODY),
        (headers(good, message_id="\u00e9", timestamp=t), BODY),
    ]


@pytest.mark.parametrize("case", range(len(bad_cases())))
def test_bad_callbacks_are_refused(case: int) -> None:
    hdrs, body = bad_cases()[case]
    with pytest.raises(WebhookError):
        verify(SECRET, hdrs, body)


def test_replay_guard_remembers_ids_for_the_window() -> None:
    clock = [1000.0]
    guard = ReplayGuard(clock=lambda: clock[0])
    assert guard.first_time("a") and guard.first_time("b")
    assert not guard.first_time("a")
    clock[0] += TOLERANCE_SECONDS  # still inside the window (the sender's own tolerance)
    assert not guard.first_time("b")
    clock[0] += 2 * TOLERANCE_SECONDS + 1  # the signature itself is stale by now; forgetting is safe
    assert guard.first_time("a")
