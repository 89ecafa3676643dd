"""What a channel shows once a job has ended: its public messages, their live buttons, the cards deleted.

Issue 14 item 2: a finished job leaves ONE public message (the result, or the failure) and no dead buttons.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.sandbox.discord import LoopbackDiscord

RESULT_ACTIONS = ("rerun", "vary", "sora")


def public_messages(server: LoopbackDiscord, channel: int) -> list[dict[str, Any]]:
    """What everyone in the channel sees (ephemeral answers are only their user's)."""
    return [m for m in server.messages[channel] if not int(m.get("flags") or 0) & 64]


def button_ids(message: dict[str, Any]) -> list[str]:
    return [c.get("custom_id") or c.get("label") or "" for row in message["components"] for c in row["components"]]


def deleted_ids(server: LoopbackDiscord, channel: int) -> list[str]:
    """Messages deleted in the channel, from the loopback's record of what happened there."""
    return [event["message_id"] for event in server.channel_log(channel) if event["type"] == "message_delete"]


def only_result_buttons(message: dict[str, Any]) -> bool:
    """No Cancel (or other dead) button: only the result's rerun/variation/Sora buttons or a compare's votes."""
    for custom_id in button_ids(message):
        parts = custom_id.split(":")
        if parts[0] == "job" and parts[-1] in RESULT_ACTIONS:
            continue
        if parts[0] == "cmp" and parts[2] == "vote":
            continue
        return False
    return True


async def one_public_message(server: LoopbackDiscord, channel: int, *, within: float = 20.0,
                             settle: float = 0.3) -> dict[str, Any]:
    """Wait until the channel holds exactly one public message and stays so for `settle` seconds (a late
    duplicate or an undeleted card would show), then return it."""
    async with asyncio.timeout(within):
        while True:
            public = public_messages(server, channel)
            if len(public) == 1:
                await asyncio.sleep(settle)
                again = public_messages(server, channel)
                if len(again) == 1 and again[0]["id"] == public[0]["id"]:
                    return again[0]
            await asyncio.sleep(0.05)
