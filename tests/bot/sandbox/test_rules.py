"""Discord's rules as pure functions: checked directly, without a server or a client."""

from __future__ import annotations

from typing import Any

import pytest

from bot.sandbox.discord.constants import Flag
from bot.sandbox.discord.rules import DiscordError, is_empty, modal_answer, typed_option, validate_message


def refused(body: dict[str, Any], *, files: list[tuple[str, bytes, str]] | None = None, limit: int = 100,
            current_flags: int = 0) -> DiscordError:
    with pytest.raises(DiscordError) as caught:
        validate_message(body, files or [], limit, current_flags=current_flags)
    return caught.value


def test_form_errors_name_the_field() -> None:
    error = refused({"content": "x" * 2001})
    assert (error.status, error.code, list(error.errors or {})) == (400, 50035, ["content"])
    assert error.envelope() == {"message": "Invalid Form Body", "code": 50035, "errors": error.errors}
    validate_message({"content": "x" * 2000}, [], 100)  # the limit itself is fine


def test_embeds_are_limited_each_and_in_total() -> None:
    assert "embeds.0.title" in (refused({"embeds": [{"title": "t" * 257}]}).errors or {})
    six = [{"description": "d" * 4000}, {"description": "d" * 2001}]
    assert (refused({"embeds": six}).errors or {})["embeds"].startswith("Embed size exceeds")


def test_components_v2_rules_stick_to_the_message() -> None:
    text = {"type": 10, "content": "hi"}
    validate_message({"components": [text] * 40, "flags": Flag.COMPONENTS_V2}, [], 100)
    assert "components" in (refused({"components": [text] * 41, "flags": Flag.COMPONENTS_V2}).errors or {})
    # An edit without the flag of a message that has it is still judged by Components V2 rules.
    assert "content" in (refused({"content": "plain"}, current_flags=Flag.COMPONENTS_V2).errors or {})


def test_custom_ids_are_required_bounded_and_unique() -> None:
    def row(*buttons: dict[str, Any]) -> dict[str, Any]:
        return {"components": [{"type": 1, "components": list(buttons)}]}

    validate_message(row({"type": 2, "style": 5, "url": "https://example.com", "label": "link"}), [], 100)
    assert "required" in (refused(row({"type": 2, "style": 1, "label": "x"})).errors or {})["components"]
    assert "100" in (refused(row({"type": 2, "style": 1, "custom_id": "c" * 101})).errors or {})["components"]
    duplicate = {"type": 2, "style": 1, "custom_id": "same"}
    assert "duplicated" in (refused(row(duplicate, duplicate)).errors or {})["components"]


def test_upload_limit_is_per_file_after_the_form_checks() -> None:
    error = refused({"content": "ok"}, files=[("a.mp4", b"x" * 101, "video/mp4")])
    assert (error.status, error.code) == (413, 40005)
    validate_message({"content": "ok"}, [("a.mp4", b"x" * 100, "video/mp4")] * 2, 100)


def test_empty_messages_and_option_typing() -> None:
    assert is_empty({"content": ""}, []) and not is_empty({}, [("a", b"", "text/plain")])
    assert typed_option(4, "7") == 7 and typed_option(10, "0.5") == 0.5
    assert typed_option(5, "Yes") is True and typed_option(5, "off") is False
    assert typed_option(6, 123) == "123" and typed_option(3, "text") == "text"


def test_modal_answers_follow_the_modal_layout() -> None:
    label = {"type": 18, "id": 3, "component": {"type": 4, "custom_id": "key", "value": "old"}}
    row = {"type": 1, "components": [{"type": 3, "custom_id": "pick"}]}
    answers = [modal_answer(component, {"pick": "b"}) for component in (label, row)]
    assert answers == [{"type": 18, "component": {"type": 4, "custom_id": "key", "value": "old"}, "id": 3},
                       {"type": 1, "components": [{"type": 3, "custom_id": "pick", "values": ["b"]}]}]
