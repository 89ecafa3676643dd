"""Validated video requests: the only way options from Discord reach the domain.

Each model enforces exactly the option sets in MODELS.md. Errors carry a sentence a user can act
on (it names the allowed values), so cogs can show it as-is.
"""

from __future__ import annotations

import math
import re
import unicodedata
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

KLING_PROMPT_MAX = 2500
SORA_PROMPT_MAX = 4000
NEGATIVE_PROMPT_MAX = 2500


class ModelName(StrEnum):
    """The video models users pick between."""

    KLING = "kling"
    SORA = "sora"


class RequestError(ValueError):
    """A request the bot will not run; `message` is safe to show the user."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class PriceTable(BaseModel):
    """Credits per second of output; admins can change it at runtime."""

    model_config = ConfigDict(frozen=True)

    kling_per_second: int = Field(default=2, ge=0)
    sora_per_second: int = Field(default=4, ge=0)
    sora_high_per_second: int = Field(default=10, ge=0)


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


def _choice(value: Any, allowed: tuple[Any, ...], message: str) -> Any:
    """Coerce `value` to one of `allowed` (ints may come as strings), or raise `message`."""
    for option in allowed:
        if value == option or (isinstance(value, str) and value.strip().lower() == str(option).lower()):
            return option
    if isinstance(value, float) and value.is_integer() and int(value) in allowed:
        return int(value)
    raise PydanticCustomError("choice", message, {"got": value})


class VideoRequest(BaseModel):
    """What both models share: a prompt, a duration and an optional first frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ClassVar[ModelName]
    label: ClassVar[str]

    prompt: str
    reference_image: str | None = Field(
        default=None, description="Local path of the fetched, resized first frame."
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    blind: bool = Field(
        default=False, description="Half of a blind /compare: nothing rendered may name the model."
    )

    @property
    def size(self) -> tuple[int, int]:
        """Output frame size as (width, height)."""
        raise NotImplementedError

    @property
    def has_audio(self) -> bool:
        raise NotImplementedError

    @property
    def seconds(self) -> int:
        return int(self.duration)  # type: ignore[attr-defined]

    def price(self, table: PriceTable | None = None) -> int:
        raise NotImplementedError

    def typical_wait(self) -> tuple[float, float]:
        """Typical provider wait in seconds (low, high), from MODELS.md."""
        raise NotImplementedError

    def size_text(self) -> str:
        width, height = self.size
        return f"{width}x{height}"


class KlingRequest(VideoRequest):
    """Kling 2.0: 720p, 5 or 10 s, three aspect ratios, CFG and negative prompt, no audio."""

    model: ClassVar[ModelName] = ModelName.KLING
    label: ClassVar[str] = "Kling 2.0"
    SIZES: ClassVar[dict[str, tuple[int, int]]] = {
        "16:9": (1280, 720),
        "9:16": (720, 1280),
        "1:1": (720, 720),
    }

    duration: Literal[5, 10] = 5
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = "16:9"
    cfg_scale: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    negative_prompt: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> str:
        return _clean_prompt(value, KLING_PROMPT_MAX, "Kling")

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return _choice(value, (5, 10), "Kling videos are 5 or 10 seconds long (got {got}).")

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _aspect(cls, value: Any) -> str:
        return _choice(value, ("16:9", "9:16", "1:1"), "Kling aspect ratio must be 16:9, 9:16 or 1:1 (got {got}).")

    @field_validator("cfg_scale", mode="before")
    @classmethod
    def _cfg(cls, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not 0.0 <= number <= 1.0:
            raise PydanticCustomError(
                "cfg", "CFG scale must be between 0.0 and 1.0 (got {got}); 0.5 is the default.", {"got": value}
            )
        return number

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
        return self.SIZES[self.aspect_ratio]

    @property
    def has_audio(self) -> bool:
        return False

    def price(self, table: PriceTable | None = None) -> int:
        return (table or PriceTable()).kling_per_second * self.duration

    def typical_wait(self) -> tuple[float, float]:
        return (120.0, 180.0) if self.duration == 5 else (240.0, 360.0)


class SoraRequest(VideoRequest):
    """Sora 2: 4/8/12 s, portrait or landscape, standard or high (pro model), with audio."""

    model: ClassVar[ModelName] = ModelName.SORA
    label: ClassVar[str] = "Sora 2"
    SIZES: ClassVar[dict[tuple[str, str], tuple[int, int]]] = {
        ("standard", "landscape"): (1280, 720),
        ("standard", "portrait"): (720, 1280),
        ("high", "landscape"): (1792, 1024),
        ("high", "portrait"): (1024, 1792),
    }
    NOT_OFFERED: ClassVar[dict[str, str]] = {
        "negative_prompt": "Sora does not take a negative prompt; describe what you want instead.",
        "cfg_scale": "Sora has no CFG scale option; that is a Kling setting.",
        "aspect_ratio": "Sora has no aspect ratio option; use orientation: landscape or portrait.",
    }

    duration: Literal[4, 8, 12] = 4
    resolution: Literal["standard", "high"] = "standard"
    orientation: Literal["landscape", "portrait"] = "landscape"
    use_own_key: bool = False

    @model_validator(mode="before")
    @classmethod
    def _reject_kling_options(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, message in cls.NOT_OFFERED.items():
                if data.get(key) is not None:
                    if key == "aspect_ratio" and data[key] == "1:1":
                        message = "Sora has no square format; choose landscape or portrait."
                    raise PydanticCustomError("not_offered", message)
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> str:
        return _clean_prompt(value, SORA_PROMPT_MAX, "Sora")

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return _choice(value, (4, 8, 12), "Sora videos are 4, 8 or 12 seconds long (got {got}).")

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution(cls, value: Any) -> str:
        return _choice(
            value, ("standard", "high"), "Sora resolution must be standard (720p) or high (1024p) (got {got})."
        )

    @field_validator("orientation", mode="before")
    @classmethod
    def _orientation(cls, value: Any) -> str:
        if isinstance(value, str) and value.strip() in {"square", "1:1"}:
            raise PydanticCustomError("square", "Sora has no square format; choose landscape or portrait.")
        return _choice(
            value, ("landscape", "portrait"), "Sora orientation must be landscape or portrait (got {got})."
        )

    @property
    def size(self) -> tuple[int, int]:
        return self.SIZES[(self.resolution, self.orientation)]

    @property
    def has_audio(self) -> bool:
        return True

    @property
    def is_pro(self) -> bool:
        """High resolution renders on the pro model."""
        return self.resolution == "high"

    def price(self, table: PriceTable | None = None) -> int:
        if self.use_own_key:
            return 0
        table = table or PriceTable()
        per_second = table.sora_high_per_second if self.is_pro else table.sora_per_second
        return per_second * self.duration

    def typical_wait(self) -> tuple[float, float]:
        extra = self.duration - 4
        low, high = 300.0 + 37.5 * extra, 480.0 + 52.5 * extra
        if self.is_pro:
            low, high = low * 4 / 3, high * 4 / 3
        return (low, high)


AnyRequest = KlingRequest | SoraRequest
REQUEST_TYPES: dict[ModelName, type[VideoRequest]] = {
    ModelName.KLING: KlingRequest,
    ModelName.SORA: SoraRequest,
}


def _user_message(error: ValidationError) -> tuple[str, str | None]:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        return (f"`{field}` is not an option of this model.", field)
    message = first["msg"]
    if field and not first["type"].startswith(("choice", "prompt", "cfg", "negative", "not_offered", "square")):
        message = f"{field.replace('_', ' ')}: {message[:1].lower()}{message[1:]}"
    if not message.endswith((".", ")")):
        message += "."
    return (message, field)


def parse_request(model: ModelName | str, **options: Any) -> AnyRequest:
    """Validate raw options (None means "not given") into a request, or raise RequestError."""
    kind = ModelName(model)
    cleaned = {key: value for key, value in options.items() if value is not None}
    try:
        return REQUEST_TYPES[kind].model_validate(cleaned)  # type: ignore[return-value]
    except ValidationError as error:
        message, field = _user_message(error)
        raise RequestError(message, field) from None


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
