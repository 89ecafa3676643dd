"""The model catalogue: the shipped file, MODELS_FILE overrides, the loader's errors, and property
tests that every enabled entry yields consistent choices, validation, sizes, prices and waits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from bot import catalogue
from bot.config import Settings, describe_validation_error
from bot.requests import KlingRequest, PriceTable, RequestError, SoraRequest, parse_request

HELDOUT = '''
[models.kling-heldout]
family = "kling"
label = "Kling Heldout"
durations = [5, 10]
audio = true
negative_prompt = true
cfg_scale = true
price_per_second = 3
typical_wait = [60, 240]
sizes = { "16:9" = "1920x1080", "9:16" = "1080x1920", "1:1" = "1080x1080" }
provider_ids = { simulated = "kling-heldout", replicate = "kwaivgi/kling-v2.6", kling = "kling-v2-6" }
'''
SHIPPED = catalogue.load()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


# -- the shipped file ------------------------------------------------------------------------------

def test_shipped_catalogue_has_todays_models_and_the_defaults() -> None:
    ids = set(SHIPPED.models)
    assert {"kling-2.0", "kling-2.1", "kling-2.5-turbo", "kling-2.6", "kling-3.0", "sora-2", "sora-2-pro"} <= ids
    assert SHIPPED.default("kling").id == "kling-2.0" and SHIPPED.default("sora").id == "sora-2"
    assert SHIPPED.high_default("sora").id == "sora-2-pro"  # type: ignore[union-attr]
    for spec in SHIPPED.models.values():
        assert {"simulated"} <= set(spec.provider_ids), spec.id
        assert spec.provider_ids.keys() <= {"simulated", "replicate", "kling", "openai"}
        assert ("openai" in spec.provider_ids) <= (spec.family == "sora")
        assert ("kling" in spec.provider_ids) <= (spec.family == "kling")


def test_shipped_file_states_a_source_for_every_model() -> None:
    text = (Path(catalogue.__file__).parent / "models.toml").read_text()
    for model_id in SHIPPED.models:
        block = text.split(f'[models."{model_id}"]', 1)[1].split("[models.", 1)[0]
        assert "read 2026-11" in block or "checked 2026-11" in block, model_id


# -- MODELS_FILE ------------------------------------------------------------------------------------

def test_the_issue_example_loads_exactly_as_written(tmp_path: Path) -> None:
    books = catalogue.load(write(tmp_path, HELDOUT))
    spec = books.get("kling-heldout")
    assert spec.enabled and spec.family == "kling" and spec.audio and spec.cfg_scale and spec.negative_prompt
    assert spec.size("16:9") == (1920, 1080) and spec.durations == (5, 10)
    assert spec.wait() == (60, 240) and spec.provider_id("kling") == "kling-v2-6"
    assert "kling-heldout" in [s.id for s in books.enabled("kling")]
    assert books.default("kling").id == "kling-2.0"  # adding a model does not change the default
    catalogue.install(books)
    request = parse_request("kling", model_id="kling-heldout", prompt="p", aspect_ratio="16:9", duration=10)
    assert (request.size, request.seconds, request.has_audio, request.price()) == ((1920, 1080), 10, True, 30)


def test_override_merges_per_key_and_provider_ids_per_provider(tmp_path: Path) -> None:
    books = catalogue.load(write(tmp_path, '[models."sora-2"]\nprice_per_second = 7\n'
                                           'provider_ids = { replicate = "acme/sora" }\n'))
    spec, shipped = books.get("sora-2"), SHIPPED.get("sora-2")
    assert spec.price_per_second == 7 and spec.durations == shipped.durations and spec.sizes == shipped.sizes
    assert spec.provider_ids == {**shipped.provider_ids, "replicate": "acme/sora"}


def test_enabled_false_hides_an_entry(tmp_path: Path) -> None:
    books = catalogue.load(write(tmp_path, '[models."kling-2.6"]\nenabled = false\n'))
    assert "kling-2.6" not in [s.id for s in books.enabled("kling")]
    assert "kling-2.6" not in books.price_keys()
    catalogue.install(books)
    with pytest.raises(RequestError, match=r"Unknown Kling model kling-2\.6"):
        parse_request("kling", model_id="kling-2.6", prompt="p")
    assert books.get("kling-2.6").label == "Kling 2.6"  # stored jobs can still be read


@pytest.mark.parametrize(("text", "where"), [
    ('[models.x]\nfamily = "kling"\n', "models.x.label"),
    (HELDOUT.replace("durations = [5, 10]", "durations = [5, 0]"), "models.kling-heldout.durations"),
    (HELDOUT.replace('"16:9" = "1920x1080"', '"16:9" = "big"'), "models.kling-heldout.sizes"),
    (HELDOUT.replace("price_per_second = 3", "price_per_second = -1"), "models.kling-heldout.price_per_second"),
    (HELDOUT.replace("audio = true", "audio = true\nsound = true"), "models.kling-heldout.sound"),
    (HELDOUT.replace('family = "kling"', 'family = "veo"'), "models.kling-heldout.family"),
    (HELDOUT.replace("[60, 240]", "[240, 60]"), "models.kling-heldout"),
    (HELDOUT.replace("simulated =", "runway ="), "models.kling-heldout.provider_ids.runway"),
    (HELDOUT.replace('"16:9" = "1920x1080",', '"landscape" = "1920x1080",'), "models.kling-heldout"),
    ('[models."kling-2.0"]\nenabled = false\n', "families.kling.default"),
    ('[families.sora]\ndefault = "kling-2.0"\n', "families.sora.default"),
    ("[models.x\n", "not valid TOML"),
    ("[engines.x]\n", "unknown top-level table 'engines'"),
])
def test_a_bad_file_is_one_line_naming_the_entry_and_key(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(catalogue.CatalogueError) as raised:
        catalogue.load(write(tmp_path, text))
    message = str(raised.value)
    assert message.startswith("MODELS_FILE: ") and where in message and "\n" not in message


def test_a_bad_models_file_stops_the_settings_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELS_FILE", str(write(tmp_path, HELDOUT.replace("[5, 10]", '["five"]'))))
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = describe_validation_error(raised.value)
    assert line.startswith("Invalid setting MODELS_FILE: models.kling-heldout.durations") and "\n" not in line
    monkeypatch.setenv("MODELS_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "cannot read" in describe_validation_error(raised.value)


def test_the_bot_refuses_to_start_with_a_bad_models_file(tmp_path: Path) -> None:
    bad = write(tmp_path, HELDOUT.replace('label = "Kling Heldout"', "label = 3"))
    env = {"PATH": "/usr/bin:/bin", "MODELS_FILE": str(bad), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Invalid setting MODELS_FILE: models.kling-heldout.label")


# -- properties over every enabled entry ---------------------------------------------------------

ENABLED = SHIPPED.enabled()


@st.composite
def options_for(draw: st.DrawFn) -> tuple[catalogue.ModelSpec, dict[str, Any]]:
    """A model, and option values drawn from every model of its family (valid for it or not)."""
    spec = draw(st.sampled_from(ENABLED))
    family = SHIPPED.enabled(spec.family)
    options: dict[str, Any] = {"model_id": spec.id, "prompt": "A fox"}
    options["duration"] = draw(st.sampled_from(sorted({d for s in family for d in s.durations} | {7})))
    shapes = sorted({shape for s in family for shape in s.shapes} | {"4:3", "square"})
    options[spec.shape_option] = draw(st.sampled_from(shapes))
    if draw(st.booleans()):
        options["cfg_scale"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        options["negative_prompt"] = "blur"
    if spec.family == "sora":
        options["resolution"] = draw(st.sampled_from(["standard", "high"]))
        options["use_own_key"] = draw(st.booleans())
    return spec, options


@settings(max_examples=400, deadline=None)
@given(drawn=options_for())
def test_every_enabled_entry_validates_sizes_and_prices_consistently(drawn: tuple[catalogue.ModelSpec,
                                                                                  dict[str, Any]]) -> None:
    spec, options = drawn
    shape = options[spec.shape_option]
    tier = options.get("resolution", "standard")
    valid = (options["duration"] in spec.durations and shape in spec.shapes and tier in spec.tiers
             and ("cfg_scale" not in options or spec.cfg_scale)
             and ("negative_prompt" not in options or spec.negative_prompt)
             and (not options.get("use_own_key") or spec.own_key))
    try:
        request = parse_request(spec.family, **options)
    except RequestError as error:
        assert not valid, error.message
        assert error.message.endswith((".", ")")) and "\n" not in error.message
        return
    assert valid, options
    assert request.model_id == spec.id and isinstance(request, KlingRequest if spec.family == "kling" else SoraRequest)
    assert request.size == spec.size(shape, tier) and request.has_audio == spec.audio
    width, height = request.size
    assert width % 2 == 0 and height % 2 == 0  # H.264 needs even sizes
    expected = 0 if options.get("use_own_key") else spec.base_price(tier) * options["duration"]
    assert request.price() == expected
    assert request.price(PriceTable({catalogue.price_key(spec, tier): 1})) == (0 if expected == 0 else
                                                                              options["duration"])
    low, high = request.typical_wait()
    assert 0 < low <= high and (low, high) == catalogue.typical_wait(spec.id, options["duration"])


@pytest.mark.parametrize("spec", ENABLED, ids=lambda spec: spec.id)
def test_every_enabled_entry_defaults_validate_and_fit_discord(spec: catalogue.ModelSpec) -> None:
    request = parse_request(spec.family, model_id=spec.id, prompt="p")
    assert request.duration == spec.duration_default and request.size == spec.size(spec.shapes[0])
    assert len(spec.label) <= 60 and len(spec.id) <= 100  # Discord choice name/value limits
    assert all(spec.provider_id(provider) for provider in ("simulated",))
    assert spec.price_keys() and all(key in SHIPPED.price_keys() for key in spec.price_keys())
    assert SHIPPED.spec_for_price_key(spec.price_keys()[-1]) == (spec, spec.tiers[-1])


def test_readme_models_table_is_the_catalogue() -> None:
    """The README's table is written from the shipped catalogue; a fact changed in one place only fails here
    (regenerate it with `python -m bot.catalogue`)."""
    from bot.catalogue import load, markdown_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    begin = readme.index("<!-- models table:")
    block = readme[readme.index("\n", begin) + 1:readme.index("\n<!-- end of models table -->")]
    assert block == markdown_table(load())
    assert "| Kling 2.0 (`kling-2.0`, `/kling` default) | 5 or 10 s | 720p: 16:9, 9:16 or 1:1 | no |" in block
