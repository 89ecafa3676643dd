"""Discord's OpenAPI description, for checking every request body a client sends to the loopback Discord.

The description (github discord/discord-api-spec, `specs/openapi.json`) is 1.2 MB, so it is not vendored:
it is read from `../shared/specs/` next to the repository, where CI keeps it, or from the file named by
DISCORD_OPENAPI_SPEC. Without it the checks are skipped, and the tests that need them say so.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

REPO_ROOT = Path(__file__).resolve().parents[1]
GUILD_MEDIA = 16


def spec_path() -> Path:
    override = os.environ.get("DISCORD_OPENAPI_SPEC")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "specs" / "discord-openapi.json"


@functools.cache
def load_spec() -> dict[str, Any] | None:
    """The description with two corrections where it falls short of Discord's docs, or None when it is absent.

    It types snowflakes as strings only; Discord also takes integers, and discord.py sends upload indexes
    (`attachments[].id`) as ints: accept both. Its ChannelTypes lack GUILD_MEDIA (16), a documented channel
    type that discord.py lists in a channel option's `channel_types`: add it. Nothing else is relaxed (the
    spec's README says to follow the docs where the two differ).
    """
    path = spec_path()
    if not path.is_file():
        return None
    spec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    snowflake = spec["components"]["schemas"]["SnowflakeType"]
    spec["components"]["schemas"]["SnowflakeType"] = {"anyOf": [snowflake, {"type": "integer", "minimum": 0}]}
    channel_types = spec["components"]["schemas"]["ChannelTypes"]["oneOf"]
    if not any(option.get("const") == GUILD_MEDIA for option in channel_types):
        channel_types.append({"title": "GUILD_MEDIA", "const": GUILD_MEDIA})
    return spec


@dataclass
class SpecChecker:
    """Validates request bodies by route; what fails is kept, not raised, so the client under test sees the
    server answer as usual and the test reports every violation at the end."""

    spec: dict[str, Any]
    checked: list[str] = field(default_factory=list)  # "METHOD /template" of each validated body
    violations: list[str] = field(default_factory=list)
    _routes: list[tuple[re.Pattern[str], str, str, dict[str, Any]]] = field(default_factory=list)
    _validators: dict[str, jsonschema.protocols.Validator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for template, item in self.spec["paths"].items():
            pattern = re.compile(re.sub(r"\\\{[a-z_]+\\\}", r"[^/]+", re.escape(template)) + "$")
            for method, operation in item.items():
                if not isinstance(operation, dict):  # path-level "parameters"
                    continue
                body = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
                if body:
                    self._routes.append((pattern, method.upper(), template, body["schema"]))

    def _validator(self, key: str, schema: dict[str, Any]) -> jsonschema.protocols.Validator:
        if key not in self._validators:
            self._validators[key] = jsonschema.Draft202012Validator(
                {**schema, "components": self.spec["components"]})
        return self._validators[key]

    def __call__(self, method: str, path: str, body: Any) -> None:
        """The loopback Discord's body check: validate `body` if the route has a JSON body schema."""
        if not isinstance(body, dict | list):
            return
        for pattern, route_method, template, schema in self._routes:
            if route_method == method and pattern.match(path):
                key = f"{method} {template}"
                self.checked.append(key)
                error = jsonschema.exceptions.best_match(self._validator(key, schema).iter_errors(body))
                if error is not None:
                    where = "/".join(str(part) for part in error.absolute_path)
                    self.violations.append(f"{method} {path}: {where or '(body)'}: {error.message[:300]}")
                return
