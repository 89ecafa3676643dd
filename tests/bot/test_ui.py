"""What users see: escaping of echoed prompts, failure wording, embeds within Discord's limits."""

from __future__ import annotations

import discord
import pytest
from hypothesis import assume, given, settings, strategies as st

from bot import ui
from bot.requests import RequestError, parse_request
from storage import Job, JobState


def make_job(**overrides: object) -> Job:
    base: dict[str, object] = dict.fromkeys(Job.__dataclass_fields__)
    base.update(id=7, user_id=1, is_dm=False, guild_installed=True, model="kling", provider="simulated",
                request_json="{}", price=10, uses_own_key=False, state=JobState.RUNNING, attempts=0,
                created_at=0.0, updated_at=0.0, progress=40)
    base.update(overrides)
    return Job(**base)  # type: ignore[arg-type]


NASTY_PROMPTS = [
    "[one](https://a.example) and [two](https://b.example) and [three](<https://c.example>)",
    "[[nested [label]](https://a.example)](https://b.example)",
    "[click](https://a.example \"title\") [x]( https://b.example )",
    "intro\n\n-# tiny subtext\n\n-# again",
    "# Heading\n## Sub\n### Third",
    "```py\nprint('hi')\n```\n`inline` ``double``",
    "||spoiler|| and ||another||",
    "@everyone @here <@123456789012345678> <@!42> <@&99> <#77> </kling:123>",
    "> quoted\n>>> block quote\n- item\n* item\n1. numbered\n2) also",
    "<https://hidden.example> https://bare.example/path?q=1 discord.gg/abc",
    "**bold** __underline__ *it* _it_ ~~strike~~ \\*escaped already\\*",
    "<:custom:123> <a:anim:456> <t:1700000000:R> :smile:",
    "\\[fake escape](https://a.example)",
]


def unescape(rendered: str) -> str:
    """Read text as Discord's markdown does for escapes; fail on any bare markdown-significant character."""
    out, i = [], 0
    while i < len(rendered):
        ch = rendered[i]
        if ch == "\\":
            assert i + 1 < len(rendered) and rendered[i + 1] in ui.MARKDOWN_SIGNIFICANT, rendered[i:i + 5]
            out.append(rendered[i + 1])
            i += 2
            continue
        assert ch not in ui.MARKDOWN_SIGNIFICANT, f"bare {ch!r} in {rendered!r}"
        out.append(ch)
        i += 1
    return "".join(out)


@pytest.mark.parametrize("prompt", NASTY_PROMPTS)
def test_nasty_prompts_render_as_their_own_text(prompt: str) -> None:
    """With no bare punctuation nothing can become a link, heading, subtext, list, code, spoiler or mention."""
    quoted = ui.quote(prompt, 4000)
    assert unescape(quoted) == prompt


def test_discord_py_escaping_was_not_enough() -> None:
    """The reason for our own quote(): discord.py leaves live markup in two of the nasty prompts."""
    leaks = 0
    for prompt in (NASTY_PROMPTS[0], NASTY_PROMPTS[3]):
        try:
            unescape(discord.utils.escape_mentions(discord.utils.escape_markdown(prompt)))
        except AssertionError:
            leaks += 1
    assert leaks == 2


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=700), limit=st.integers(min_value=2, max_value=1200))
def test_quote_is_bounded_and_faithful(text: str, limit: int) -> None:
    quoted = ui.quote(text, limit)
    assert len(quoted) <= limit
    if quoted.endswith("…") and unescape(quoted[:-1]) != text:
        assert text.startswith(unescape(quoted[:-1]))  # a prefix, never a split escape
    else:
        assert unescape(quoted) == text


def test_quote_truncates() -> None:
    assert len(ui.quote("x" * 5000, 900)) == 900
    assert len(ui.quote("*" * 5000, 900)) <= 900


def test_failure_words_name_the_setting_for_retired_models() -> None:
    job = make_job(state=JobState.FAILED, error_code="model_unavailable", provider_model="kling-v2-master",
                   provider="kling")
    words = ui.failure_words(job)
    assert "kling-v2-master" in words and "KLING_PROVIDER" in words and "MODELS_FILE" in words
    sora = make_job(model="sora", state=JobState.FAILED, error_code="model_unavailable", provider_model="sora-2")
    assert "SORA_PROVIDER" in ui.failure_words(sora)


def test_own_key_auth_failure_blames_the_key_only_in_private() -> None:
    own = make_job(error_code="auth", uses_own_key=True)
    assert "your OpenAI key" in ui.failure_words(own, private=True)
    public = ui.failure_words(own)
    assert "OpenAI key" not in public and "/job show 7" in public
    assert "operator" in ui.failure_words(make_job(error_code="auth"))


def fields(embed: discord.Embed) -> dict[str, str]:
    return {field.name or "": field.value or "" for field in embed.fields}


def test_first_frame_tag_stays_on_every_card_of_a_first_frame_job() -> None:
    """The result card is built from the job alone (no has_image argument): the tag must survive."""
    request = parse_request("kling", prompt="A fox.")
    for state in (JobState.ACCEPTED, JobState.RUNNING, JobState.DOWNLOADED, JobState.DELIVERED):
        with_image = make_job(state=state, reference_url="https://cdn.example/frame.png")
        assert fields(ui.job_embed(with_image, request))["Options"].endswith(" · first frame")
        assert "first frame" not in fields(ui.job_embed(make_job(state=state), request))["Options"]
    rerun = make_job(state=JobState.DELIVERED, reference_url="file:///refs/job3.png")
    assert "first frame" in fields(ui.job_embed(rerun, request))["Options"]
    assert "first frame" not in fields(ui.job_embed(rerun, request, has_image=False))["Options"]


@pytest.mark.parametrize("state", [JobState.ACCEPTED, JobState.SUBMITTED, JobState.RUNNING])
def test_a_job_retried_after_429s_says_when_instead_of_queued(state: JobState) -> None:
    request = parse_request("sora", prompt="A fox.")
    job = make_job(model="sora", state=state, attempts=3, error_code="rate_limited", next_run_at=1_800_000_123.7)
    shown = fields(ui.job_embed(job, request, eta=15))
    assert shown["Status"] == "Retrying at <t:1800000123:T> (provider busy)"
    assert "ETA" not in shown and "Queued" not in str(shown)
    unavailable = make_job(state=state, attempts=1, error_code="transient", next_run_at=1_800_000_000.0)
    assert fields(ui.job_embed(unavailable, request))["Status"] == \
        "Retrying at <t:1800000000:T> (provider unavailable)"


def test_not_retrying_shows_the_plain_state() -> None:
    request = parse_request("kling", prompt="A fox.")
    queued = fields(ui.job_embed(make_job(state=JobState.ACCEPTED, progress=None, next_run_at=5.0), request, eta=15))
    assert queued["Status"] == "Queued" and queued["ETA"] == "about 15 s"
    # A poll that succeeded after a retry resets attempts; the stale error code is not a retry.
    stale = make_job(state=JobState.RUNNING, attempts=0, error_code="rate_limited", next_run_at=5.0, progress=40)
    assert fields(ui.job_embed(stale, request))["Status"].startswith("Rendering ▰")
    # Finished jobs never claim to be retrying, whatever is left in the row.
    for state in (JobState.DOWNLOADED, JobState.FAILED, JobState.CANCELED):
        done = make_job(state=state, attempts=2, error_code="rate_limited", next_run_at=5.0)
        assert "Retrying" not in fields(ui.job_embed(done, request))["Status"]
    # A non-retryable code is not shown as a retry either.
    refused = make_job(state=JobState.ACCEPTED, attempts=1, error_code="content_policy", next_run_at=5.0)
    assert fields(ui.job_embed(refused, request))["Status"] == "Queued"


def test_public_card_names_the_owner_and_hides_cost_and_key_state() -> None:
    request = parse_request("sora", prompt="A fox.", use_own_key=True)
    job = make_job(model="sora", user_id=4242, uses_own_key=True, price=0)
    public = ui.job_embed(job, request)
    text = str(public.to_dict())
    assert fields(public)["By"] == "<@4242>"
    assert "Cost" not in fields(public) and "OpenAI key" not in text and "credit" not in text
    private = fields(ui.job_embed(job, request, private=True))
    assert private["Cost"] == "0 credits (your OpenAI key)"
    paid = fields(ui.job_embed(make_job(price=16), parse_request("kling", prompt="A fox."), private=True))
    assert paid["Cost"] == "16 credits"


def test_charge_receipt_has_the_charge_and_balance() -> None:
    one = ui.charge_words([make_job(id=5, price=10)], 104)
    assert one == "Charged 10 credits for video #5; your balance is now 104 credits."
    pair = ui.charge_words([make_job(id=5, price=10), make_job(id=6, price=16)], 94)
    assert pair == "Charged 26 credits for this comparison; your balance is now 94 credits."  # no ids: blind
    rerun = ui.charge_words([make_job(id=9, price=10)], 50, for_someone_else=True)
    assert rerun.startswith("Charged 10 credits for video #9;") and "not the author of the original job" in rerun
    own = ui.charge_words([make_job(id=8, price=0, uses_own_key=True)], 120)
    assert own == "Billed to your OpenAI key: no credits charged for video #8. Your balance: 120 credits."


@settings(max_examples=150, deadline=None)
@given(prompt=st.text(min_size=1, max_size=2500).filter(str.strip),
       negative=st.one_of(st.none(), st.text(max_size=2500)))
def test_job_embed_stays_within_discord_limits(prompt: str, negative: str | None) -> None:
    """Any accepted prompt (unicode, zero-width, RTL, huge) renders an embed Discord accepts."""
    try:
        request = parse_request("kling", prompt=prompt, negative_prompt=negative)
    except RequestError:
        assume(False)  # only invisible characters: refused, nothing to render
        return
    embed = ui.job_embed(make_job(), request, eta=100, note="n" * 300, private=True)
    assert len(embed) <= 6000
    assert len(embed.description or "") <= 4096
    assert all(len(field.value or "") <= 1024 for field in embed.fields)
    assert "@everyone" not in (embed.description or "").replace("\\@everyone", "")


def test_result_view_buttons_are_persistent() -> None:
    view = ui.result_view(make_job())
    ids = [item.custom_id for item in view.children if isinstance(item, ui.JobButton)]
    assert ids == ["job:7:rerun", "job:7:vary", "job:7:sora"]
    assert view.timeout is None and view.is_persistent()
    sora_view = ui.result_view(make_job(model="sora"))
    assert len(sora_view.children) == 2
