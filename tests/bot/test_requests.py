"""Validated requests: every boundary of MODELS.md, and property tests over random option sets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from bot import catalogue
from bot.requests import (
    KlingRequest,
    PriceTable,
    RequestError,
    SoraRequest,
    kling_prompt_hint,
    parse_request,
    request_from_json,
)

KLING_PROMPT_MAX = catalogue.current().family("kling").prompt_max
SORA_PROMPT_MAX = catalogue.current().family("sora").prompt_max


def test_kling_defaults() -> None:
    request = parse_request("kling", prompt="a fox runs")
    assert isinstance(request, KlingRequest)
    assert (request.duration, request.aspect_ratio, request.cfg_scale) == (5, "16:9", 0.5)
    assert request.size == (1280, 720) and not request.has_audio


def test_sora_defaults() -> None:
    request = parse_request("sora", prompt="a fox runs")
    assert isinstance(request, SoraRequest)
    assert (request.duration, request.resolution, request.orientation) == (4, "standard", "landscape")
    assert request.size == (1280, 720) and request.has_audio


@pytest.mark.parametrize(("aspect", "size"), [("16:9", (1280, 720)), ("9:16", (720, 1280)), ("1:1", (720, 720))])
def test_kling_sizes(aspect: str, size: tuple[int, int]) -> None:
    assert parse_request("kling", prompt="p", aspect_ratio=aspect).size == size


@pytest.mark.parametrize(
    ("resolution", "orientation", "size"),
    [
        ("standard", "landscape", (1280, 720)),
        ("standard", "portrait", (720, 1280)),
        ("high", "landscape", (1792, 1024)),
        ("high", "portrait", (1024, 1792)),
    ],
)
def test_sora_sizes(resolution: str, orientation: str, size: tuple[int, int]) -> None:
    request = parse_request("sora", prompt="p", resolution=resolution, orientation=orientation)
    assert request.size == size


@pytest.mark.parametrize("duration", [0, 4, 6, 8, 12, -5, 15, "five", 5.5])
def test_kling_rejects_other_durations(duration: Any) -> None:
    with pytest.raises(RequestError, match="5 or 10 seconds"):
        parse_request("kling", prompt="p", duration=duration)


@pytest.mark.parametrize("duration", [5, 10, "5", "10", 10.0])
def test_kling_accepts_its_durations(duration: Any) -> None:
    assert parse_request("kling", prompt="p", duration=duration).duration == int(float(duration))


@pytest.mark.parametrize("duration", [0, 5, 10, 16, 3, "x"])
def test_sora_rejects_other_durations(duration: Any) -> None:
    with pytest.raises(RequestError, match="4, 8 or 12 seconds"):
        parse_request("sora", prompt="p", duration=duration)


@pytest.mark.parametrize("cfg", [0.0, 0.3, 0.5, 1.0, "0.7"])
def test_cfg_in_range(cfg: Any) -> None:
    assert parse_request("kling", prompt="p", cfg_scale=cfg).cfg_scale == float(cfg)


@pytest.mark.parametrize("cfg", [-0.01, 1.01, 2, float("nan"), float("inf"), "high"])
def test_cfg_out_of_range_names_the_range(cfg: Any) -> None:
    with pytest.raises(RequestError, match=r"between 0\.0 and 1\.0"):
        parse_request("kling", prompt="p", cfg_scale=cfg)


def test_kling_aspect_ratio_error_names_allowed_values() -> None:
    with pytest.raises(RequestError, match="16:9, 9:16 or 1:1"):
        parse_request("kling", prompt="p", aspect_ratio="4:3")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"negative_prompt": "blurry"}, "negative prompt"),
        ({"cfg_scale": 0.5}, "CFG"),
        ({"aspect_ratio": "1:1"}, "no square"),
        ({"orientation": "square"}, "no square"),
        ({"resolution": "4k"}, "standard .720p. or high .1024p."),
        ({"orientation": "diagonal"}, "landscape or portrait"),
    ],
)
def test_sora_rejects_kling_only_options_instead_of_dropping_them(options: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_request("sora", prompt="p", **options)


def test_prompt_limits() -> None:
    assert parse_request("kling", prompt="x" * KLING_PROMPT_MAX).prompt == "x" * KLING_PROMPT_MAX
    with pytest.raises(RequestError, match=f"at most {KLING_PROMPT_MAX}"):
        parse_request("kling", prompt="x" * (KLING_PROMPT_MAX + 1))
    assert len(parse_request("sora", prompt="x" * SORA_PROMPT_MAX).prompt) == SORA_PROMPT_MAX
    with pytest.raises(RequestError, match=f"at most {SORA_PROMPT_MAX}"):
        parse_request("sora", prompt="x" * (SORA_PROMPT_MAX + 1))
    for blank in ("", "   ", "\n\t"):
        with pytest.raises(RequestError, match="Write a prompt"):
            parse_request("kling", prompt=blank)


def test_negative_prompt_blank_means_none_and_is_capped() -> None:
    assert parse_request("kling", prompt="p", negative_prompt="  ").negative_prompt is None  # type: ignore[union-attr]
    with pytest.raises(RequestError, match="negative prompt"):
        parse_request("kling", prompt="p", negative_prompt="n" * 2501)


def test_unknown_option_is_refused() -> None:
    with pytest.raises(RequestError, match="`bogus` is not an option"):
        parse_request("kling", prompt="p", bogus=1)


def test_prices_follow_the_table() -> None:
    table = PriceTable({"kling-2.0": 3, "sora-2": 5, "sora-2-pro:high": 11})
    assert parse_request("kling", prompt="p", duration=10).price(table) == 30
    assert parse_request("sora", prompt="p", duration=8).price(table) == 40
    assert parse_request("sora", prompt="p", duration=12, resolution="high").price(table) == 132
    assert parse_request("sora", prompt="p", duration=12, use_own_key=True).price(table) == 0
    # Sora costs more than Kling for the same length, and high more than standard.
    assert parse_request("sora", prompt="p", duration=4).price() > parse_request("kling", prompt="p").price() / 5 * 4


def test_typical_waits_follow_models_md() -> None:
    assert parse_request("kling", prompt="p").typical_wait() == (120, 180)
    assert parse_request("kling", prompt="p", duration=10).typical_wait() == (240, 360)
    low, high = parse_request("sora", prompt="p").typical_wait()
    assert (low, high) == (300, 480)
    low, high = parse_request("sora", prompt="p", duration=12, resolution="high").typical_wait()
    assert low >= 15 * 60 * 0.8 and high >= 15 * 60


def test_json_round_trip_revalidates() -> None:
    request = parse_request("sora", prompt="p", duration=12, orientation="portrait")
    assert request_from_json("sora", request.model_dump_json()) == request
    with pytest.raises(ValueError):
        request_from_json("sora", '{"prompt": "p", "duration": 5}')


def test_jobs_stored_before_the_catalogue_still_load() -> None:
    """Request JSON of jobs in flight across the upgrade has no model_id: it means the old models."""
    kling = request_from_json("kling", '{"prompt": "p", "duration": 10, "aspect_ratio": "9:16", "cfg_scale": 0.5,'
                                       ' "negative_prompt": null, "reference_image": null, "seed": 3}')
    assert isinstance(kling, KlingRequest)
    assert (kling.model_id, kling.size, kling.cfg_scale, kling.seed) == ("kling-2.0", (720, 1280), 0.5, 3)
    sora = request_from_json("sora", '{"prompt": "p", "duration": 12, "resolution": "high",'
                                     ' "orientation": "portrait", "use_own_key": true, "reference_image": null}')
    assert isinstance(sora, SoraRequest)
    assert (sora.model_id, sora.size, sora.own_key) == ("sora-2-pro", (1024, 1792), True)
    plain = request_from_json("sora", '{"prompt": "p", "duration": 4, "resolution": "standard",'
                                      ' "orientation": "landscape"}')
    assert plain.model_id == "sora-2"


def test_kling_hint_for_long_prompts_only() -> None:
    assert kling_prompt_hint("A red fox runs through snow.") is None
    assert kling_prompt_hint("One. Two. Three sentences here.") is not None


KLING_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "duration": st.one_of(st.integers(-20, 20), st.sampled_from(["5", "10", "x"])),
        "aspect_ratio": st.sampled_from(["16:9", "9:16", "1:1", "4:3", "", "21:9"]),
        "cfg_scale": st.one_of(st.floats(-2, 2), st.just(float("nan")), st.none()),
        "negative_prompt": st.one_of(st.none(), st.text(max_size=40)),
        "seed": st.integers(-5, 2**31 + 5),
    },
)
SORA_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "duration": st.integers(-20, 20),
        "resolution": st.sampled_from(["standard", "high", "low", "1080p"]),
        "orientation": st.sampled_from(["landscape", "portrait", "square", "1:1", "up"]),
        "use_own_key": st.booleans(),
        "negative_prompt": st.one_of(st.none(), st.just("blur")),
        "cfg_scale": st.one_of(st.none(), st.floats(0, 1)),
    },
)


def _kling_valid(options: dict[str, Any]) -> bool:
    cfg = options.get("cfg_scale")
    return (
        options.get("duration", 5) in (5, 10, "5", "10")
        and options.get("aspect_ratio", "16:9") in ("16:9", "9:16", "1:1")
        and (cfg is None or 0 <= cfg <= 1)  # NaN compares False: refused
        and len((options.get("negative_prompt") or "").strip()) <= 2500
        and 0 <= options.get("seed", 0) <= 2**31 - 1
    )


@settings(max_examples=300, deadline=None)
@given(prompt=st.text(max_size=60), options=KLING_OPTIONS)
def test_kling_property_accepts_exactly_the_valid_sets(prompt: str, options: dict[str, Any]) -> None:
    """Any option set is either accepted with the documented size and price, or refused with a sentence."""
    valid = has_text(prompt) and _kling_valid(options)
    try:
        request = parse_request("kling", prompt=prompt, **options)
    except RequestError as error:
        assert not valid, error.message
        assert error.message and error.message[-1] in ".)"
        return
    assert valid
    assert isinstance(request, KlingRequest)
    assert request.size in {(1280, 720), (720, 1280), (720, 720)} and request.duration in (5, 10)
    assert request.price(PriceTable()) == 2 * request.duration


@settings(max_examples=300, deadline=None)
@given(prompt=st.text(min_size=1, max_size=60), options=SORA_OPTIONS)
def test_sora_property_accepts_exactly_the_valid_sets(prompt: str, options: dict[str, Any]) -> None:
    valid = (
        has_text(prompt)
        and options.get("duration", 4) in (4, 8, 12)
        and options.get("resolution", "standard") in ("standard", "high")
        and options.get("orientation", "landscape") in ("landscape", "portrait")
        and options.get("negative_prompt") is None
        and options.get("cfg_scale") is None
    )
    try:
        request = parse_request("sora", prompt=prompt, **options)
    except RequestError as error:
        assert not valid, error.message
        return
    assert valid
    assert isinstance(request, SoraRequest)
    width, height = request.size
    assert (width > height) == (request.orientation == "landscape")
    assert request.has_audio
    assert request.price() == (0 if request.use_own_key else (10 if request.is_pro else 4) * request.duration)


# -- hostile prompts: control, format and surrogate characters ------------------------------------

import unicodedata  # noqa: E402

INVISIBLE = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cc", "Cf")]
DROPPED = {"Cc", "Cf", "Cs"}


def visible(text: str) -> list[str]:
    """The characters a reader sees (no controls, formats, surrogates or whitespace), in order."""
    return [ch for ch in text if unicodedata.category(ch) not in DROPPED and not ch.isspace()]


def test_every_control_and_format_character_alone_is_an_empty_prompt() -> None:
    assert len(INVISIBLE) > 200 and "\u200b" in INVISIBLE and "\u202e" in INVISIBLE and "\x00" in INVISIBLE
    for model in ("kling", "sora"):
        for ch in INVISIBLE:
            with pytest.raises(RequestError, match="Write a prompt"):
                parse_request(model, prompt=ch * 3)
        with pytest.raises(RequestError, match="Write a prompt"):
            parse_request(model, prompt=" ".join(INVISIBLE))
    for blank in ("\u3164\u3164", "\u2800", "\u200b \u115f\u1160 \ufeff"):
        with pytest.raises(RequestError, match="Write a prompt"):
            parse_request("kling", prompt=blank)


def test_invisible_characters_are_dropped_and_newlines_kept() -> None:
    request = parse_request("sora", prompt="\u202eA\u200b cat\r\nsleeps\tsoundly\x00\ud800.\u2066")
    assert request.prompt == "A cat\nsleeps soundly."
    assert parse_request("kling", prompt="A fox", negative_prompt="\u200b\u200d").negative_prompt is None
    assert parse_request("kling", prompt="A fox", negative_prompt="\u202eblur\x07").negative_prompt == "blur"


ANY_CHARACTER = st.one_of(
    st.characters(exclude_categories=()),  # every code point, surrogates included
    st.sampled_from(INVISIBLE),
    st.sampled_from(["\n", "\r", "\t", " ", "\u3164", "\u2800"]),
)


@settings(max_examples=400, deadline=None)
@given(prompt=st.text(alphabet=ANY_CHARACTER, max_size=60), model=st.sampled_from(["kling", "sora"]))
def test_random_unicode_prompts(prompt: str, model: str) -> None:
    """Accepted prompts carry no invisible characters and keep every visible one; refusals say why."""
    try:
        request = parse_request(model, prompt=prompt)
    except RequestError as error:
        assert error.field == "prompt"
        assert "Write a prompt" in error.message
        assert all(ch.isspace() or ch in "\u115f\u1160\u3164\uffa0\u2800" for ch in visible(prompt)) or not visible(
            prompt)
        return
    cleaned = request.prompt
    assert cleaned == cleaned.strip() and cleaned
    assert all(ch == "\n" or unicodedata.category(ch) not in DROPPED for ch in cleaned)
    assert "\r" not in cleaned and "\t" not in cleaned
    assert visible(cleaned) == visible(prompt)
    cleaned.encode("utf-8")  # sendable to a provider


@settings(max_examples=50, deadline=None)
@given(padding=st.text(alphabet=st.sampled_from(INVISIBLE), min_size=1, max_size=3000))
def test_length_limit_counts_what_remains(padding: str) -> None:
    """Invisible padding neither pushes a prompt over the limit nor hides one that is too long."""
    assert parse_request("kling", prompt="a" * 2500 + padding).prompt == "a" * 2500
    with pytest.raises(RequestError, match="at most 2500"):
        parse_request("kling", prompt=padding + "a" * 2501)


def has_text(prompt: str) -> bool:
    return any(ch not in "\u115f\u1160\u3164\uffa0\u2800" for ch in visible(prompt))
