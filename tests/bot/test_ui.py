"""What users see: escaping of echoed prompts, failure wording, embeds within Discord's limits."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from bot import ui
from bot.requests import parse_request
from storage import Job, JobState


def make_job(**overrides: object) -> Job:
    base: dict[str, object] = dict.fromkeys(Job.__dataclass_fields__)
    base.update(id=7, user_id=1, is_dm=False, guild_installed=True, model="kling", provider="simulated",
                request_json="{}", price=10, uses_own_key=False, state=JobState.RUNNING, attempts=0,
                created_at=0.0, updated_at=0.0, progress=40)
    base.update(overrides)
    return Job(**base)  # type: ignore[arg-type]


def test_quote_neutralises_mentions_and_markdown() -> None:
    text = ui.quote("@everyone **bold** <@123> [link](http://x) `code`")
    assert "@everyone" not in text.replace("@\u200beveryone", "")
    assert "\\*\\*bold\\*\\*" in text


def test_quote_truncates() -> None:
    assert len(ui.quote("x" * 5000, 900)) == 900


def test_failure_words_name_the_setting_for_retired_models() -> None:
    job = make_job(state=JobState.FAILED, error_code="model_unavailable", provider_model="kling-v2-master",
                   provider="kling")
    words = ui.failure_words(job)
    assert "kling-v2-master" in words and "KLING_MODEL" in words
    sora = make_job(model="sora", state=JobState.FAILED, error_code="model_unavailable", provider_model="sora-2")
    assert "SORA_MODEL" in ui.failure_words(sora)


def test_own_key_auth_failure_blames_the_key() -> None:
    assert "your OpenAI key" in ui.failure_words(make_job(error_code="auth", uses_own_key=True))
    assert "operator" in ui.failure_words(make_job(error_code="auth"))


@settings(max_examples=150, deadline=None)
@given(prompt=st.text(min_size=1, max_size=2500).filter(str.strip),
       negative=st.one_of(st.none(), st.text(max_size=2500)))
def test_job_embed_stays_within_discord_limits(prompt: str, negative: str | None) -> None:
    """Any accepted prompt (unicode, zero-width, RTL, huge) renders an embed Discord accepts."""
    request = parse_request("kling", prompt=prompt, negative_prompt=negative)
    embed = ui.job_embed(make_job(), request, balance=10, eta=100, note="n" * 300)
    assert len(embed) <= 6000
    assert len(embed.description or "") <= 4096
    assert all(len(field.value or "") <= 1024 for field in embed.fields)
    assert "@everyone" not in (embed.description or "").replace("@\u200beveryone", "")


def test_result_view_buttons_are_persistent() -> None:
    view = ui.result_view(make_job())
    ids = [item.custom_id for item in view.children if isinstance(item, ui.JobButton)]
    assert ids == ["job:7:rerun", "job:7:vary", "job:7:sora"]
    assert view.timeout is None and view.is_persistent()
    sora_view = ui.result_view(make_job(model="sora"))
    assert len(sora_view.children) == 2
