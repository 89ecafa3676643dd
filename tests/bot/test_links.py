"""Signed video link names: only the bot can make one, each names one job, and it expires."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from bot.crypto import SecretBox
from bot.links import VideoLinks

NOW = 1_800_000_000.0
KEY = SecretBox("k" * 40).subkey("video-links")


def links(now: float = NOW, key: bytes = KEY, hours: float = 72) -> VideoLinks:
    return VideoLinks(key, "https://bot.example/", hours, lambda: now)


def test_a_signed_name_names_its_job_until_it_expires() -> None:
    name = links().name(42)
    assert links().job_id(name) == 42
    assert links().url(42) == f"https://bot.example/videos/{name}"
    expires = int(name.split("-")[1])
    assert NOW + 72 * 3600 <= expires < NOW + 73 * 3600  # rounded up to the hour: stable links within an hour
    assert links(now=expires).job_id(name) == 42
    assert links(now=expires + 1).job_id(name) is None


def test_other_keys_and_purposes_do_not_verify() -> None:
    name = links().name(42)
    assert links(key=SecretBox("j" * 40).subkey("video-links")).job_id(name) is None
    assert links(key=SecretBox("k" * 40).subkey("something-else")).job_id(name) is None
    assert VideoLinks(KEY, None, 72, lambda: NOW).url(42) is None  # no PUBLIC_BASE_URL, no link


@settings(max_examples=300, deadline=None)
@given(job_id=st.integers(min_value=1, max_value=10**12), position=st.integers(min_value=0), char=st.characters())
def test_any_single_change_is_refused(job_id: int, position: int, char: str) -> None:
    name = links().name(job_id)
    index = position % len(name)
    changed = name[:index] + char + name[index + 1:]
    if changed != name:
        assert links().job_id(changed) is None


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=80))
def test_random_names_are_refused(name: str) -> None:
    assert links().job_id(name) is None


def test_another_jobs_signature_does_not_transfer() -> None:
    name = links().name(7)
    _, expires, rest = name.split("-", 2)  # the signature itself may contain "-"
    assert links().job_id(f"job8-{expires}-{rest}") is None
