"""Discord's rules as pure functions: form limits, component rules, option typing, modal answers.

No state and no I/O, so each rule can be read (and tested) on its own; a broken rule raises `DiscordError`
carrying the status, code and per-field errors Discord answers with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from bot.sandbox.discord.constants import V2_MAX_COMPONENTS, Component, Flag, Option, Style

UploadedFile = tuple[str, bytes, str]  # (filename, data, content type) as a multipart part carried it


class DiscordError(Exception):
    """An error answered in Discord's envelope."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def invalid_form(errors: dict[str, Any]) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def walk_components(components: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component in a tree: action rows, Components V2 containers and sections, modal labels."""
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                yield from walk_components([component[key]])


def validate_message(body: dict[str, Any], files: Sequence[UploadedFile], limit: int, *,
                     current_flags: int = 0) -> None:
    """Discord's form checks (50035 with per-field errors), then the per-file upload limit (413/40005).

    `current_flags` are the flags of the message being edited: Components V2 rules stick to a message.
    """
    errors: dict[str, Any] = {}
    content = body.get("content")
    if content is not None and len(content) > 2000:
        errors["content"] = "Must be 2000 or fewer in length."
    flags = int(body.get("flags") or 0) | int(current_flags or 0)
    if flags & Flag.COMPONENTS_V2:
        if body.get("content") or body.get("embeds"):
            errors["content"] = "The 'content' and 'embeds' fields cannot be used with Components V2."
        if len(list(walk_components(body.get("components") or []))) > V2_MAX_COMPONENTS:
            errors["components"] = f"Must be {V2_MAX_COMPONENTS} or fewer in total."
    elif len(body.get("components") or []) > 5:
        errors["components"] = "Must be 5 or fewer in length."
    _validate_embeds(body.get("embeds") or [], errors)
    validate_components(body.get("components") or [], errors)
    if len(files) > 10 or len(body.get("attachments") or []) > 10:
        errors["attachments"] = "Must be 10 or fewer in length."
    if errors:
        raise invalid_form(errors)
    for _, data, _ in files:
        if len(data) > limit:
            raise DiscordError(413, 40005, "Request entity too large")


def _validate_embeds(embeds: list[dict[str, Any]], errors: dict[str, Any]) -> None:
    """At most 10 embeds, each field within its limit, 6000 characters in all."""
    if len(embeds) > 10:
        errors["embeds"] = "Must be 10 or fewer in length."
    total = 0
    for index, embed in enumerate(embeds):
        for key, maximum in (("title", 256), ("description", 4096)):
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > maximum:
                errors[f"embeds.{index}.{key}"] = f"Must be {maximum} or fewer in length."
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors[f"embeds.{index}.fields"] = "Must be 25 or fewer in length."
        for number, item in enumerate(fields):
            total += len(item.get("name") or "") + len(item.get("value") or "")
            if len(item.get("name") or "") > 256 or len(item.get("value") or "") > 1024:
                errors[f"embeds.{index}.fields.{number}"] = "Field too long."
        footer = (embed.get("footer") or {}).get("text") or ""
        author = (embed.get("author") or {}).get("name") or ""
        total += len(footer) + len(author)
        if len(footer) > 2048:
            errors[f"embeds.{index}.footer.text"] = "Must be 2048 or fewer in length."
        if len(author) > 256:
            errors[f"embeds.{index}.author.name"] = "Must be 256 or fewer in length."
    if total > 6000:
        errors["embeds"] = "Embed size exceeds maximum size of 6000"


def validate_components(components: Sequence[dict[str, Any]], errors: dict[str, Any]) -> None:
    """custom_id: present on interactive components, at most 100 characters, unique in the message."""
    seen: set[str] = set()
    for component in walk_components(components):
        custom_id = component.get("custom_id")
        if custom_id is None:
            kind = component.get("type")
            if kind in Component.NEEDS_CUSTOM_ID or (kind == Component.BUTTON and
                                                     component.get("style") not in (Style.LINK, Style.PREMIUM)):
                errors["components"] = "custom_id is required for this component."
            continue
        if len(custom_id) > 100:
            errors["components"] = "custom_id must be 100 or fewer in length."
        if custom_id in seen:
            errors["components"] = "Component custom id cannot be duplicated"
        seen.add(custom_id)


def validate_modal(components: Sequence[dict[str, Any]]) -> None:
    errors: dict[str, Any] = {}
    validate_components(components, errors)
    if errors:
        raise invalid_form(errors)


def is_empty(body: dict[str, Any], files: Sequence[UploadedFile]) -> bool:
    """A message with nothing to show, which Discord refuses (50006)."""
    return not (body.get("content") or body.get("embeds") or body.get("components") or files
                or body.get("sticker_ids") or body.get("poll"))


def typed_option(option_type: int, value: Any) -> Any:
    """An option value as Discord types it in the payload (the registered option type decides)."""
    if option_type == Option.INTEGER:
        return int(value)
    if option_type == Option.NUMBER:
        return float(value)
    if option_type == Option.BOOLEAN:
        return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
    if option_type in Option.STRINGIFIED:
        return str(value)
    return value


def modal_answer(component: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """What the Discord client submits for one modal component, filled from `values` (by custom_id)."""
    kind = component.get("type")
    if kind == Component.ACTION_ROW:
        return {"type": kind, "components": [modal_answer(child, values) for child in component.get("components", [])]}
    if kind == Component.LABEL:
        answer = {"type": kind, "component": modal_answer(component["component"], values)}
        return answer | ({"id": component["id"]} if "id" in component else {})
    custom_id = component.get("custom_id")
    if kind == Component.TEXT_INPUT:
        return {"type": kind, "custom_id": custom_id, "value": str(values.get(custom_id, component.get("value") or ""))}
    if kind in (*Component.SELECTS, Component.CHECKBOX_GROUP):
        chosen = values.get(custom_id, [])
        return {"type": kind, "custom_id": custom_id, "values": [str(v) for v in
                                                                 (chosen if isinstance(chosen, list) else [chosen])]}
    if kind == Component.FILE_UPLOAD:  # uploads in modals are not simulated: no values
        return {"type": kind, "custom_id": custom_id, "values": []}
    if kind == Component.RADIO_GROUP:
        return {"type": kind, "custom_id": custom_id, "value": values.get(custom_id)}
    if kind == Component.CHECKBOX:
        return {"type": kind, "custom_id": custom_id, "value": bool(values.get(custom_id, False))}
    return {key: component[key] for key in ("type", "id", "custom_id") if key in component}
