"""Validated video requests: the only way options from Discord reach the domain.

Each model enforces exactly the option sets of its entry in the model catalogue (bot/catalogue.py,
bot/models.toml). Errors carry a sentence a user can act on (it names the allowed values), so cogs
can show it as-is.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot import catalogue
from bot.catalogue import ModelSpec

NEGATIVE_PROMPT_MAX = 2500
CFG_DEFAULT = 0.5  # the providers' own default for models that take a CFG scale


class ModelName(StrEnum):
    """The model families, one slash command each (the catalogue lists the models in each)."""

    KLING = "kling"
    SORA = "sora"


class RequestError(ValueError):
    """A request the bot will not run; `message` is safe to show the user."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class PriceTable:
    """Credits per second in force: the catalogue's prices with runtime overrides (by price key)."""

    def __init__(self, overrides: Mapping[str, int] | None = None) -> None:
        self.overrides = dict(overrides or {})

    def per_second(self, spec: ModelSpec, tier: catalogue.Tier = "standard") -> int:
        return self.overrides.get(catalogue.price_key(spec, tier), spec.base_price(tier))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceTable) and other.overrides == self.overrides

    __hash__ = None  # type: ignore[assignment]


DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
# Letters that render as nothing (Hangul fillers, the blank braille pattern): a prompt of only these is empty.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def clean_text(value: str) -> str:
    """Drop control (Cc), format (Cf) and lone surrogate (Cs) characters, then strip.

    Zero-width and bidi-override characters are invisible in a card yet reach the provider (and
    let a "blank" prompt be charged); lone surrogates cannot even be sent as UTF-8. Ordinary line
    breaks stay: detailed Sora prompts are written in paragraphs and newlines are harmless to the
    providers and to our cards, which escape everything (`ui.quote`). CR and CRLF become LF, a tab
    a space (so no words run together).
    """
    text = value.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) not in DROPPED_CATEGORIES)
    return text.strip()


def is_blank(text: str) -> bool:
    return all(ch.isspace() or ch in BLANK_LETTERS for ch in text)


def _clean_prompt(value: Any, limit: int, label: str) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("prompt_type", "The prompt must be text.")
    text = clean_text(value)
    if is_blank(text):
        raise PydanticCustomError("prompt_empty", "Write a prompt describing the video.")
    if len(text) > limit:
        raise PydanticCustomError(
            "prompt_long",
            "{label} prompts can be at most {limit} characters (yours has {got}).",
            {"label": label, "limit": limit, "got": len(text)},
        )
    return text


def _choice(value: Any, allowed: tuple[Any, ...], message: str, params: dict[str, Any] | None = None) -> Any:
    """Coerce `value` to one of `allowed` (ints may come as strings), or raise `message`."""
    for option in allowed:
        if value == option or (isinstance(value, str) and value.strip().lower() == str(option).lower()):
            return option
    if isinstance(value, float) and value.is_integer() and int(value) in allowed:
        return int(value)
    raise PydanticCustomError("choice", message, {"got": value, **(params or {})})


def _words(values: tuple[Any, ...]) -> str:
    """'5 or 10', '4, 8 or 12': allowed values as a user reads them."""
    texts = [str(value) for value in values]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}"


def _spec(family: ModelName, data: dict[str, Any], *, offered_only: bool) -> ModelSpec:
    """The catalogue entry a request names, or the family's default (old stored jobs name none).

    New requests (`offered_only`) may only name enabled models; a stored job may name one the
    operator has disabled since.
    """
    books = catalogue.current()
    model_id = data.get("model_id")
    if model_id is None:
        if family is ModelName.SORA and str(data.get("resolution", "")).strip().lower() == "high":
            high = books.high_default(family.value)  # `resolution: high` alone meant "the pro model"
            if high is not None:
                return high
        return books.default(family.value)
    try:
        spec = books.get(str(model_id))
    except KeyError:
        # A stored job whose model was deleted from MODELS_FILE since: shown under a stand-in, never rendered.
        spec = None if offered_only else books.stored(str(model_id), family.value)
    if spec is None or spec.family != family.value or (offered_only and not spec.enabled):
        choices = _words(tuple(s.id for s in books.enabled(family.value)))
        raise PydanticCustomError("choice", "Unknown {family} model {got}; choose {choices}.",
                                  {"family": books.family(family.value).label, "got": model_id, "choices": choices})
    return spec


def _not_offered(spec: ModelSpec, data: dict[str, Any]) -> None:
    """Options the model does not take are refused in plain words, never dropped."""
    if data.get("negative_prompt") is not None and not spec.negative_prompt:
        raise PydanticCustomError("not_offered", "{label} does not take a negative prompt; describe what you want "
                                  "instead.", {"label": spec.label})
    if data.get("cfg_scale") is not None and not spec.cfg_scale:
        raise PydanticCustomError("not_offered", "{label} has no CFG scale option.", {"label": spec.label})
    if data.get("use_own_key") and not spec.own_key:
        raise PydanticCustomError("not_offered", "{label} cannot bill your own API key.", {"label": spec.label})


class VideoRequest(BaseModel):
    """What every model shares: a model id, a prompt, a duration and an optional first frame.

    The options a model takes and the values they may have come from its catalogue entry
    (bot/models.toml); the family's request class only names the options.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ClassVar[ModelName]

    model_id: str = Field(description="Catalogue id; filled with the family default when absent (old jobs).")
    prompt: str
    duration: int
    reference_image: str | None = Field(
        default=None, description="Local path of the fetched, resized first frame."
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    blind: bool = Field(
        default=False, description="Half of a blind /compare: nothing rendered may name the model."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_catalogue(cls, data: Any, info: ValidationInfo) -> Any:
        """Resolve the model and check every catalogue-bound option against its entry."""
        if not isinstance(data, dict):
            return data
        spec = _spec(cls.model, data, offered_only=bool(info.context and info.context.get("new")))
        data = {**data, "model_id": spec.id}
        _not_offered(spec, data)
        data["duration"] = _choice(
            data.get("duration", spec.duration_default), spec.durations,
            "{label} videos are {allowed} seconds long (got {got}).",
            {"label": spec.label, "allowed": _words(spec.durations)},
        )
        data["prompt"] = _clean_prompt(data.get("prompt"), catalogue.current().family(spec.family).prompt_max,
                                       spec.label)
        return cls._family_options(spec, data)

    @classmethod
    def _family_options(cls, spec: ModelSpec, data: dict[str, Any]) -> dict[str, Any]:
        return data

    @property
    def spec(self) -> ModelSpec:
        return catalogue.current().stored(self.model_id, self.model.value)

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def tier(self) -> catalogue.Tier:
        return "standard"

    @property
    def size(self) -> tuple[int, int]:
        """Output frame size as (width, height)."""
        raise NotImplementedError

    @property
    def has_audio(self) -> bool:
        return self.spec.audio

    @property
    def seconds(self) -> int:
        return int(self.duration)

    @property
    def own_key(self) -> bool:
        return False

    def price(self, table: PriceTable | None = None) -> int:
        """Credits this request costs: per second of output, from the catalogue or an override."""
        if self.own_key:
            return 0
        return (table or PriceTable()).per_second(self.spec, self.tier) * self.duration

    def typical_wait(self) -> tuple[float, float]:
        """Typical provider wait in seconds (low, high), from the catalogue."""
        return self.spec.wait(self.duration)

    def size_text(self) -> str:
        width, height = self.size
        return f"{width}x{height}"


class KlingRequest(VideoRequest):
    """A Kling-family request: aspect ratio, and CFG scale / negative prompt where the model takes them."""

    model: ClassVar[ModelName] = ModelName.KLING

    aspect_ratio: str
    cfg_scale: float | None = None
    negative_prompt: str | None = None

    @classmethod
    def _family_options(cls, spec: ModelSpec, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("orientation") is not None:
            raise PydanticCustomError("not_offered", "{label} has no orientation option; use aspect_ratio.",
                                      {"label": spec.label})
        data["aspect_ratio"] = _choice(
            data.get("aspect_ratio", spec.shapes[0]), spec.shapes,
            "{label} aspect ratio must be {allowed} (got {got}).",
            {"label": spec.label, "allowed": _words(spec.shapes)},
        )
        if data.get("cfg_scale") is not None:
            data["cfg_scale"] = _cfg(data["cfg_scale"])
        elif spec.cfg_scale:
            data["cfg_scale"] = CFG_DEFAULT
        return data

    @field_validator("negative_prompt", mode="before")
    @classmethod
    def _negative(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise PydanticCustomError("negative_type", "The negative prompt must be text.")
        text = clean_text(value)
        if is_blank(text):
            return None
        if len(text) > NEGATIVE_PROMPT_MAX:
            raise PydanticCustomError(
                "negative_long",
                "The negative prompt can be at most {limit} characters (yours has {got}).",
                {"limit": NEGATIVE_PROMPT_MAX, "got": len(text)},
            )
        return text or None

    @property
    def size(self) -> tuple[int, int]:
        return self.spec.size(self.aspect_ratio)


def _cfg(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise PydanticCustomError(
            "cfg", "CFG scale must be between 0.0 and 1.0 (got {got}); 0.5 is the default.", {"got": value}
        )
    return number


def _tier_words(spec: ModelSpec | None) -> str:
    """'standard (720p) or high (1024p)', from the sizes of the model that has both tiers."""
    if spec is None:
        return "standard"
    return " or ".join(f"{tier} ({min(spec.size(spec.shapes[0], tier))}p)" for tier in spec.tiers)


class SoraRequest(VideoRequest):
    """A Sora-family request: orientation, resolution tier, and the user's own OpenAI key."""

    model: ClassVar[ModelName] = ModelName.SORA

    resolution: Literal["standard", "high"] = "standard"
    orientation: str
    use_own_key: bool = False

    @classmethod
    def _family_options(cls, spec: ModelSpec, data: dict[str, Any]) -> dict[str, Any]:
        aspect = data.get("aspect_ratio")
        if aspect is not None:
            message = "{label} has no aspect ratio option; use orientation: landscape or portrait."
            if aspect == "1:1":
                message = "{label} has no square format; choose landscape or portrait."
            raise PydanticCustomError("not_offered", message, {"label": spec.label})
        orientation = data.get("orientation", spec.shapes[0])
        if isinstance(orientation, str) and orientation.strip() in {"square", "1:1"}:
            raise PydanticCustomError("square", "{label} has no square format; choose landscape or portrait.",
                                      {"label": spec.label})
        data["orientation"] = _choice(orientation, spec.shapes, "{label} orientation must be {allowed} (got {got}).",
                                      {"label": spec.label, "allowed": _words(spec.shapes)})
        high = catalogue.current().high_default(spec.family)
        resolution = _choice(data.get("resolution", "standard"), ("standard", "high"),
                             "Resolution must be {allowed} (got {got}).", {"allowed": _tier_words(high)})
        if resolution not in spec.tiers:
            hint = f"; choose model {high.label}" if high is not None else ""
            raise PydanticCustomError("not_offered", "{label} has no {got} resolution{hint}.",
                                      {"label": spec.label, "got": resolution, "hint": hint})
        data["resolution"] = resolution
        return data

    @property
    def tier(self) -> catalogue.Tier:
        return self.resolution

    @property
    def size(self) -> tuple[int, int]:
        return self.spec.size(self.orientation, self.resolution)

    @property
    def is_pro(self) -> bool:
        """Renders at the high tier (1024p)."""
        return self.resolution == "high"

    @property
    def own_key(self) -> bool:
        return self.use_own_key


AnyRequest = KlingRequest | SoraRequest
REQUEST_TYPES: dict[ModelName, type[VideoRequest]] = {
    ModelName.KLING: KlingRequest,
    ModelName.SORA: SoraRequest,
}


def _user_message(error: ValidationError) -> tuple[str, str | None]:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    if field is None and first["type"].startswith("prompt"):
        field = "prompt"  # checked with the model's catalogue entry, before field validation
    if first["type"] == "extra_forbidden":
        return (f"`{field}` is not an option of this model.", field)
    message = first["msg"]
    if field and not first["type"].startswith(("choice", "prompt", "cfg", "negative", "not_offered", "square")):
        message = f"{field.replace('_', ' ')}: {message[:1].lower()}{message[1:]}"
    if not message.endswith((".", ")")):
        message += "."
    return (message, field)


def parse_request(model: ModelName | str, *, has_image: bool = False, **options: Any) -> AnyRequest:
    """Validate raw options (None means "not given") into a request, or raise RequestError.

    `model_id` picks a catalogue entry of the family (default: the family's default model);
    `has_image` says a first frame is attached, which the model must take.
    """
    kind = ModelName(model)
    cleaned = {key: value for key, value in options.items() if value is not None}
    try:
        request: AnyRequest = REQUEST_TYPES[kind].model_validate(cleaned, context={"new": True})  # type: ignore[assignment]
    except ValidationError as error:
        message, field = _user_message(error)
        raise RequestError(message, field) from None
    if has_image and not request.spec.first_frame:
        raise RequestError(f"{request.label} does not take a first frame image.", "image")
    return request


def request_from_json(model: ModelName | str, data: str) -> AnyRequest:
    """Load a request stored with the job (already validated once, validated again for safety)."""
    return REQUEST_TYPES[ModelName(model)].model_validate_json(data)  # type: ignore[return-value]


_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


def kling_prompt_hint(prompt: str) -> str | None:
    """Kling does best with one or two sentences; say so gently for longer prompts."""
    sentences = [part for part in _SENTENCE_END.split(prompt) if part.strip()]
    if len(sentences) > 2 or len(prompt) > 300:
        return (
            "Tip: Kling works best with a concise prompt (one or two sentences about the subject and "
            "its movement). Save the detailed lighting and camera notes for Sora."
        )
    return None
