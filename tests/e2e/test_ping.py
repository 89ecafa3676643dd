"""The real bot logs in to the loopback Discord, syncs its commands and answers in time."""

from __future__ import annotations

from bot import catalogue
from tests.e2e.harness import BotHarness


async def test_bot_syncs_its_commands_with_their_options(harness: BotHarness) -> None:
    commands = {command["name"]: command for command in harness.server.registered_commands()}
    assert {"kling", "sora", "compare", "compare-stats", "credits", "jobs", "job", "openai-key", "models", "help",
            "ping"} <= set(commands)
    kling = {option["name"]: option for option in commands["kling"]["options"]}
    books = catalogue.current()
    # The model choices are the catalogue's enabled models of the family; the rest is their union.
    assert [c["value"] for c in kling["model"]["choices"]] == [spec.id for spec in books.enabled("kling")]
    assert "kling-2.1" not in [c["value"] for c in kling["model"]["choices"]]  # shipped disabled
    assert kling["model"]["required"] is False and "default" in kling["model"]["choices"][0]["name"]
    assert [c["value"] for c in kling["duration"]["choices"]] == [5, 10, 15]
    assert [c["value"] for c in kling["aspect_ratio"]["choices"]] == ["16:9", "9:16", "1:1"]
    assert (kling["cfg_scale"]["min_value"], kling["cfg_scale"]["max_value"]) == (0.0, 1.0)
    assert kling["image"]["type"] == 11
    sora = {option["name"]: option for option in commands["sora"]["options"]}
    assert "negative_prompt" not in sora and "cfg_scale" not in sora
    assert [c["value"] for c in sora["duration"]["choices"]] == [4, 8, 12]
    assert [c["value"] for c in sora["model"]["choices"]] == ["sora-2", "sora-2-pro"]
    assert sora["use_own_key"]["type"] == 5
    compare = [option["name"] for option in commands["compare"]["options"]]
    assert compare == ["prompt", "length", "orientation", "image", "blind"]
    lengths = {option["name"]: option for option in commands["compare"]["options"]}["length"]["choices"]
    assert [c["name"] for c in lengths] == ["short (Kling 2.0 5 s, Sora 2 4 s)", "long (Kling 2.0 10 s, Sora 2 12 s)"]
    assert commands["kling"]["integration_types"] == [0, 1] and commands["kling"]["contexts"] == [0, 1, 2]


async def test_ping_is_answered_within_the_ack_window(harness: BotHarness) -> None:
    server = harness.server
    interaction = await harness.invoke("/ping", user=server.alice, channel=server.general)
    assert interaction.response_type == 4 and interaction.error is None
    assert "Pong" in harness.ephemeral_text(interaction)
