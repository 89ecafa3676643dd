"""The card tells the truth about its own end (issue 14 item 2): who canceled, and, where only the
interaction's webhook reaches it, that the video comes by DM once Discord's 15 minutes are over."""

from __future__ import annotations

import discord
import pytest

from bot import ui
from bot.requests import parse_request
from storage import JobState
from tests.bot.test_ui import make_job

EXPIRES = 1_800_000_900.0


def fields(embed: discord.Embed) -> dict[str, str]:
    return {field.name or "": field.value or "" for field in embed.fields}


def webhook_only(**overrides: object):  # type: ignore[no-untyped-def]
    return make_job(**({"guild_installed": False, "is_dm": False, "token_expires_at": EXPIRES} | overrides))


def test_a_webhook_only_card_says_from_the_start_that_the_video_may_come_by_dm() -> None:
    request = parse_request("kling", prompt="A fox.")
    shown = fields(ui.job_embed(webhook_only(), request))
    assert shown["Delivery"] == (f"Discord lets the bot update this card until <t:{int(EXPIRES)}:t>; if the video "
                                 "takes longer, it comes to you by DM.")
    last = fields(ui.job_embed(webhook_only(), request, now=EXPIRES - 120))  # the last edits before the end
    assert last["Delivery"] == (f"This card stops updating <t:{int(EXPIRES)}:R> (Discord's 15-minute limit): "
                                "your video will come to you by DM.")


@pytest.mark.parametrize("overrides", [{"guild_installed": True}, {"is_dm": True}, {"state": JobState.DELIVERED}])
def test_cards_the_bot_can_still_reach_or_that_ended_say_nothing_of_dms(overrides: dict[str, object]) -> None:
    job = webhook_only(**overrides)
    assert "Delivery" not in fields(ui.job_embed(job, parse_request("kling", prompt="A fox."), now=EXPIRES - 60))
    assert "Delivery" not in fields(ui.job_embed(job, parse_request("kling", prompt="A fox."), private=True))


def test_a_blind_compare_card_carries_the_same_warning() -> None:
    jobs = [webhook_only(id=1, model="kling", request_json='{"prompt": "x"}'),
            webhook_only(id=2, model="sora", request_json='{"prompt": "x"}')]
    assert "by DM" in fields(ui.blind_compare_embed(jobs, "kling", now=EXPIRES - 60))["Delivery"]


@pytest.mark.parametrize(("price", "own_key", "message", "status"), [
    (10, False, "canceled by the user", "Canceled by <@1> · refunded"),
    (10, False, "canceled by the user; 10 credits charged (the provider could not stop the render)",
     "Canceled by <@1> · charged (the render could not be stopped)"),
    (10, True, "canceled by the user", "Canceled by <@1>"),  # own-key billing stays private
    (10, False, "canceled at the provider", "Canceled"),
])
def test_a_cancel_says_who_and_whether_it_cost_never_how_much(price: int, own_key: bool, message: str,
                                                              status: str) -> None:
    job = make_job(state=JobState.CANCELED, error_code="canceled", error_message=message, price=price,
                   uses_own_key=own_key)
    assert ui.status_words(job) == status
