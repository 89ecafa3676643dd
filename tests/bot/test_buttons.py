"""The buttons' custom_ids are a contract with messages already posted; every id the bot posts has exactly one
handler, registered by the cog that handles it."""

from __future__ import annotations

import discord
import pytest

from bot import ui
from cogs.jobs import ShowButtonHandler
from cogs.video import JobButtonHandler, VoteButtonHandler
from tests.bot.test_ui import make_job

HANDLERS = (JobButtonHandler, VoteButtonHandler, ShowButtonHandler)


def custom_ids(view: discord.ui.View | None) -> list[str | None]:
    assert view is not None
    return [getattr(item, "custom_id", None) for item in view.children]


def test_the_posted_custom_ids_keep_their_format() -> None:
    job = make_job(id=7, model="kling")
    assert custom_ids(ui.result_view(job)) == ["job:7:rerun", "job:7:vary", "job:7:sora"]
    assert custom_ids(ui.running_view(job)) == ["job:7:cancel"]
    assert custom_ids(ui.confirm_cancel_view(job)) == ["job:7:stop"]
    assert ui.JobButton(7, "show").custom_id == "job:7:show"
    assert ui.VoteButton(3, "b", "B is better").custom_id == "cmp:3:vote:b"
    pair = [make_job(id=7, model="kling"), make_job(id=8, model="sora")]
    assert custom_ids(ui.compare_cancel_view(pair, "kling", blind=True)) == ["job:7:cancel", "job:8:cancel"]


def test_each_posted_id_has_exactly_one_handler() -> None:
    """Two handlers for one id would both answer the click; none would leave it unanswered."""
    posted = [ui.job_custom_id(12, action) for action in ui.ACTIONS] + [ui.vote_custom_id(5, "a"),
                                                                          ui.vote_custom_id(5, "b")]
    for custom_id in posted:
        matching = [h for h in HANDLERS if h.__discord_ui_compiled_template__.fullmatch(custom_id)]
        assert len(matching) == 1, (custom_id, matching)
    for foreign in ("job:12:delete", "job:x:rerun", "cmp:5:vote:c", "job:12:rerun:more"):
        assert not any(h.__discord_ui_compiled_template__.fullmatch(foreign) for h in HANDLERS), foreign


def test_job_template_refuses_unknown_actions() -> None:
    with pytest.raises(ValueError, match="delete"):
        ui.job_template("rerun", "delete")
    with pytest.raises(ValueError):
        ui.job_template()


def test_posted_views_are_not_kept_in_the_view_store() -> None:
    """discord.py stores a sent view only when it has a dispatchable item; ours are answered by DynamicItems."""
    view = ui.result_view(make_job())
    assert view.timeout is None and view.is_persistent() and not view.is_dispatchable()


async def test_the_handlers_answer_through_the_cog_they_are_bound_to() -> None:
    calls: list[tuple[object, ...]] = []

    class FakeVideo:
        async def on_job_button(self, interaction: object, job_id: int, action: str) -> None:
            calls.append((self, job_id, action))

        async def on_vote(self, interaction: object, compare_id: int, slot: str) -> None:
            calls.append((self, compare_id, slot))

    from cogs.video import bound_handlers

    first, second = FakeVideo(), FakeVideo()
    job_a, vote_a = bound_handlers(first)  # type: ignore[arg-type]
    job_b, _ = bound_handlers(second)  # type: ignore[arg-type]
    button: discord.ui.Button[discord.ui.View] = discord.ui.Button(custom_id="job:4:vary")  # as read from a message
    match = job_a.__discord_ui_compiled_template__.fullmatch("job:4:vary")
    assert match is not None
    await (await job_a.from_custom_id(None, button, match)).callback(None)  # type: ignore[arg-type]
    await (await job_b.from_custom_id(None, button, match)).callback(None)  # type: ignore[arg-type]
    vote: discord.ui.Button[discord.ui.View] = discord.ui.Button(custom_id="cmp:9:vote:a")
    vote_match = vote_a.__discord_ui_compiled_template__.fullmatch("cmp:9:vote:a")
    assert vote_match is not None
    await (await vote_a.from_custom_id(None, vote, vote_match)).callback(None)  # type: ignore[arg-type]
    assert calls == [(first, 4, "vary"), (second, 4, "vary"), (first, 9, "a")]
