"""The model catalogue: every model fact, read from `bot/models.toml` plus the operator's MODELS_FILE.

Before this, each model's options, sizes and prices were restated in five places and adding a
model meant editing all of them. Now validators, slash choices, prices, /models, /compare, the
Kling→Sora escalation, the poller's priors, the simulated renderer and the provider request
builders all ask this module.

The catalogue in force is process state (`current()` / `install()`): requests are validated in
pure functions all over the code base, and threading a catalogue through each would touch every
signature. The bot installs the catalogue its settings describe at start; tests reset it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Family = Literal["kling", "sora"]
ProviderName = Literal["simulated", "replicate", "kling", "openai"]
Tier = Literal["standard", "high"]
FAMILIES: tuple[Family, ...] = ("kling", "sora")
MAX_CHOICES = 25  # Discord allows at most 25 choices per option
SHAPE_OPTION: dict[Family, str] = {"kling": "aspect_ratio", "sora": "orientation"}
_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_SIZE = re.compile(r"([1-9][0-9]{1,4})x([1-9][0-9]{1,4})")
_RATIO = re.compile(r"[1-9][0-9]?:[1-9][0-9]?")
ORIENTATIONS = ("landscape", "portrait")


class CatalogueError(ValueError):
    """A catalogue file the bot will not start with; the message is one line naming entry and key."""


class FamilySpec(BaseModel):
    """What a command (/kling, /sora) offers regardless of model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1, max_length=40)
    default: str
    prompt_max: int = Field(ge=1, le=32000)
    best_for: str = ""
    tips: str = ""


class ModelSpec(BaseModel):
    """One model: its options, output sizes, price, typical wait and ids at each provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    family: Family
    label: str = Field(min_length=1, max_length=60)
    enabled: bool = True
    durations: tuple[int, ...] = Field(min_length=1, max_length=MAX_CHOICES)
    default_duration: int | None = None
    sizes: dict[str, str] = Field(min_length=1, max_length=MAX_CHOICES)
    high_sizes: dict[str, str] = Field(default_factory=dict)
    audio: bool = False
    cfg_scale: bool = False
    negative_prompt: bool = False
    first_frame: bool = True
    own_key: bool = False
    mode: Literal["std", "pro"] = "std"
    price_per_second: int = Field(ge=0, le=100000)
    high_price_per_second: int | None = Field(default=None, ge=0, le=100000)
    typical_wait: tuple[float, float] | dict[int, tuple[float, float]]
    provider_ids: dict[ProviderName, str] = Field(default_factory=dict)
    tips: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("ids are lower-case letters, digits, '.', '_' or '-' (at most 63)")
        return value

    @field_validator("durations")
    @classmethod
    def _durations(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= seconds <= 60 for seconds in value) or len(set(value)) != len(value):
            raise ValueError("durations are distinct whole seconds between 1 and 60")
        return tuple(sorted(value))

    @field_validator("sizes", "high_sizes")
    @classmethod
    def _sizes(cls, value: dict[str, str]) -> dict[str, str]:
        for shape, size in value.items():
            if not _SIZE.fullmatch(size):
                raise ValueError(f"size of {shape!r} must look like 1280x720 (got {size!r})")
        return value

    @field_validator("provider_ids")
    @classmethod
    def _provider_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for provider, model_id in value.items():
            if not model_id.strip() or len(model_id) > 200:
                raise ValueError(f"the {provider} id must be non-empty text")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.default_duration is not None and self.default_duration not in self.durations:
            raise ValueError(f"default_duration {self.default_duration} is not one of the durations")
        for shape in self.sizes:
            ok = _RATIO.fullmatch(shape) if self.family == "kling" else shape in ORIENTATIONS
            if not ok:
                wanted = "aspect ratios like 16:9" if self.family == "kling" else "landscape or portrait"
                raise ValueError(f"sizes of a {self.family} model are keyed by {wanted} (got {shape!r})")
        if self.high_sizes and set(self.high_sizes) != set(self.sizes):
            raise ValueError("high_sizes must have the same keys as sizes")
        if bool(self.high_sizes) != (self.high_price_per_second is not None):
            raise ValueError("high_sizes and high_price_per_second go together")
        waits = self.typical_wait.values() if isinstance(self.typical_wait, dict) else [self.typical_wait]
        for low, high in waits:
            if not 0 < low <= high:
                raise ValueError("typical_wait is [low, high] seconds with 0 < low <= high")
        if isinstance(self.typical_wait, dict) and set(self.typical_wait) != set(self.durations):
            raise ValueError("a typical_wait table needs one [low, high] per duration")
        if self.own_key and self.family != "sora":
            raise ValueError("own_key is for Sora models (a user's own OpenAI key)")
        return self

    # -- derived facts -------------------------------------------------------------------------

    @property
    def shape_option(self) -> str:
        """The option that picks the frame shape: aspect_ratio (Kling) or orientation (Sora)."""
        return SHAPE_OPTION[self.family]

    @property
    def shapes(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    @property
    def duration_default(self) -> int:
        return self.default_duration if self.default_duration is not None else self.durations[0]

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return ("standard", "high") if self.high_sizes else ("standard",)

    def size(self, shape: str, tier: Tier = "standard") -> tuple[int, int]:
        """Output (width, height) for a shape and resolution tier."""
        text = (self.high_sizes if tier == "high" else self.sizes)[shape]
        width, _, height = text.partition("x")
        return int(width), int(height)

    def base_price(self, tier: Tier = "standard") -> int:
        if tier == "high" and self.high_price_per_second is not None:
            return self.high_price_per_second
        return self.price_per_second

    def wait(self, duration: int | None = None) -> tuple[float, float]:
        """Typical provider wait for one clip of `duration` seconds (shortest if None)."""
        seconds = duration if duration in self.durations else self.durations[0]
        if isinstance(self.typical_wait, dict):
            return self.typical_wait[seconds]
        low, high = self.typical_wait
        scale = seconds / self.durations[0]
        return (low * scale, high * scale)

    def provider_id(self, provider: str) -> str | None:
        """This model's id at `provider`; the simulated provider renders any model under its own id."""
        found = self.provider_ids.get(provider)  # type: ignore[call-overload]
        if found is None and provider == "simulated":
            return f"sim-{self.id}"
        return found

    def price_keys(self) -> list[str]:
        return [price_key(self, tier) for tier in self.tiers]


def price_key(spec: ModelSpec, tier: Tier = "standard") -> str:
    """The `/credits-set-price` key of a model's tier: its id, or `id:high`."""
    return spec.id if tier == "standard" else f"{spec.id}:{tier}"


class Catalogue:
    """All models known to this process (disabled ones too: stored jobs may name them)."""

    def __init__(self, families: Mapping[str, FamilySpec], models: Mapping[str, ModelSpec]) -> None:
        self.families: dict[str, FamilySpec] = dict(families)
        self.models: dict[str, ModelSpec] = dict(models)

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self.models[model_id]
        except KeyError:
            raise KeyError(f"unknown model {model_id!r}") from None

    def stored(self, model_id: str, family: str) -> ModelSpec:
        """The entry a stored job names, or, when an operator deleted it from MODELS_FILE, a stand-in.

        Why: a job outlives catalogue edits. `enabled = false` is the way to retire a model (its jobs finish),
        but a deleted entry must not make /jobs, cards or the job's own failure notice crash. The stand-in
        has the family default's facts, is disabled and is labelled so nobody mistakes it for that
        model; `offers()` is False for it, so the runner refunds such a job rather than submit it.
        """
        spec = self.models.get(model_id)
        if spec is not None:
            return spec
        stand_in = self.default(family)
        return stand_in.model_copy(update={"id": model_id, "label": f"{model_id} (no longer offered)",
                                           "enabled": False, "durations": tuple(range(1, 61))})

    def offers(self, model_id: str) -> bool:
        """Whether the model still has an entry (enabled or not): a deleted one cannot be submitted."""
        return model_id in self.models

    def enabled(self, family: str | None = None) -> list[ModelSpec]:
        return [spec for spec in self.models.values() if spec.enabled and (family is None or spec.family == family)]

    def family(self, family: str) -> FamilySpec:
        return self.families[family]

    def default(self, family: str) -> ModelSpec:
        return self.models[self.families[family].default]

    def high_default(self, family: str) -> ModelSpec | None:
        """The model a family's `resolution: high` renders on when no model is named (Sora 2 Pro)."""
        default = self.default(family)
        if default.high_sizes:
            return default
        return next((spec for spec in self.enabled(family) if spec.high_sizes), None)

    def price_keys(self) -> list[str]:
        return [key for spec in self.enabled() for key in spec.price_keys()]

    def with_provider_ids(self, ids: Mapping[str, Mapping[str, str]]) -> Catalogue:
        """A copy with some models' provider ids replaced ({model_id: {provider: id}})."""
        models = dict(self.models)
        for model_id, replacements in ids.items():
            spec = models[model_id]
            models[model_id] = spec.model_copy(update={"provider_ids": {**spec.provider_ids, **replacements}})
        return Catalogue(self.families, models)

    def spec_for_price_key(self, key: str) -> tuple[ModelSpec, Tier] | None:
        model_id, _, tier = key.partition(":")
        spec = self.models.get(model_id)
        if spec is None or tier not in ("", "high") or (tier == "high" and not spec.high_sizes):
            return None
        return spec, ("high" if tier else "standard")


# -- loading ------------------------------------------------------------------------------------

def _read(path: Path | None, *, what: str) -> dict[str, Any]:
    try:
        text = (resources.files("bot") / "models.toml").read_text("utf-8") if path is None else path.read_text("utf-8")
    except OSError as error:
        raise CatalogueError(f"{what}: cannot read {path}: {error.strerror or error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"{what}: not valid TOML: {error}") from None
    unknown = sorted(set(data) - {"models", "families"})
    if unknown:
        raise CatalogueError(f"{what}: unknown top-level table {unknown[0]!r} (only [models.<id>] and "
                             "[families.kling|sora])")
    for table in ("models", "families"):
        if not isinstance(data.get(table, {}), dict):
            raise CatalogueError(f"{what}: {table} must be a table")
        for name, entry in data.get(table, {}).items():
            if not isinstance(entry, dict):
                raise CatalogueError(f"{what}: {table}.{name} must be a table")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Per key; `provider_ids` per provider (an override names one provider's id, keeps the rest)."""
    merged = dict(base)
    for key, value in extra.items():
        if key == "provider_ids" and isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def _first_error(error: ValidationError, prefix: str) -> str:
    first = error.errors()[0]
    where = ".".join([prefix, *(str(part) for part in first["loc"])])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def build(data: Iterable[tuple[str, dict[str, Any]]]) -> Catalogue:
    """Merge catalogue tables (shipped first, then overrides) and validate every entry."""
    raw_models: dict[str, dict[str, Any]] = {}
    raw_families: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for what, table in data:
        for model_id, entry in table.get("models", {}).items():
            raw_models[model_id] = _merge(raw_models.get(model_id, {}), entry)
            origin[f"models.{model_id}"] = what
        for name, entry in table.get("families", {}).items():
            raw_families[name] = _merge(raw_families.get(name, {}), entry)
            origin[f"families.{name}"] = what
    families: dict[str, FamilySpec] = {}
    for name in FAMILIES:
        where = f"families.{name}"
        if name not in raw_families:
            raise CatalogueError(f"{where}: missing")
        try:
            families[name] = FamilySpec.model_validate(raw_families[name])
        except ValidationError as error:
            raise CatalogueError(f"{origin[where]}: {_first_error(error, where)}") from None
    extra = sorted(set(raw_families) - set(FAMILIES))
    if extra:
        raise CatalogueError(f"{origin['families.' + extra[0]]}: families.{extra[0]}: unknown family "
                             "(kling or sora)")
    models: dict[str, ModelSpec] = {}
    for model_id, entry in raw_models.items():
        where = f"models.{model_id}"
        if "id" in entry:
            raise CatalogueError(f"{origin[where]}: {where}.id: the id is the table name; remove the key")
        try:
            models[model_id] = ModelSpec.model_validate({"id": model_id, **entry})
        except ValidationError as error:
            raise CatalogueError(f"{origin[where]}: {_first_error(error, where)}") from None
    for name, family in families.items():
        where = f"families.{name}.default"
        spec = models.get(family.default)
        if spec is None or spec.family != name or not spec.enabled:
            blame = origin.get(f"models.{family.default}")
            blame = blame if blame == "MODELS_FILE" else origin["families." + name]
            raise CatalogueError(f"{blame}: {where}: {family.default!r} is not an enabled {name} model")
        count = sum(1 for spec in models.values() if spec.enabled and spec.family == name)
        if count > MAX_CHOICES:
            raise CatalogueError(f"models: at most {MAX_CHOICES} enabled {name} models (Discord's choice limit)")
    return Catalogue(families, models)


def load(models_file: Path | None = None) -> Catalogue:
    """The shipped catalogue, with MODELS_FILE's entries merged over it by id."""
    tables = [("bot/models.toml", _read(None, what="bot/models.toml"))]
    if models_file is not None:
        tables.append(("MODELS_FILE", _read(models_file, what="MODELS_FILE")))
    return build(tables)


# -- the catalogue in force -----------------------------------------------------------------------

_current: Catalogue | None = None


def current() -> Catalogue:
    """The installed catalogue; the shipped one until the bot installs its own."""
    global _current
    if _current is None:
        _current = load()
    return _current


def install(catalogue: Catalogue | None) -> None:
    """Make `catalogue` the one in force (None: back to the shipped file on next use)."""
    global _current
    _current = catalogue


def get(model_id: str) -> ModelSpec:
    return current().get(model_id)


def typical_wait(model_id: str, duration: int | None = None) -> tuple[float, float]:
    """The model's typical provider wait in seconds (low, high), for the poller's prior."""
    return current().get(model_id).wait(duration)


# -- the README's table ---------------------------------------------------------------------------


def _words(items: list[str], last: str) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {last} " + items[-1]


def _picture(spec: ModelSpec) -> str:
    lines = sorted({min(spec.size(shape)) for shape in spec.shapes})
    base = "/".join(f"{line}p" for line in lines)
    if spec.high_sizes:
        high = "/".join(f"{line}p" for line in sorted({min(spec.size(shape, "high")) for shape in spec.shapes}))
        base += f", or `resolution:high` {high}"
    return f"{base}: {_words(list(spec.shapes), 'or')}"


def markdown_table(catalogue: Catalogue | None = None) -> str:
    """The enabled models as the README shows them: written from the catalogue, so the README cannot
    drift from what the bot offers (a test compares them; `python -m bot.catalogue` prints it, with an
    operator's MODELS_FILE merged when the variable is set)."""
    catalogue = catalogue or current()
    rows = ["| model (`model:` value) | length | picture | sound | CFG / negative | credits/s |",
            "|---|---|---|---|---|---|"]
    for spec in catalogue.enabled():
        default = f", `/{spec.family}` default" if catalogue.families[spec.family].default == spec.id else ""
        price = str(spec.price_per_second)
        if spec.high_price_per_second is not None:
            price += f" (high {spec.high_price_per_second})"
        lengths = _words([str(seconds) for seconds in spec.durations], "or") + " s"
        yes = {True: "yes", False: "no"}
        rows.append(f"| {spec.label} (`{spec.id}`{default}) | {lengths} | {_picture(spec)} | "
                    f"{yes[spec.audio]} | {yes[spec.cfg_scale]} / {yes[spec.negative_prompt]} | {price} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import os
    import sys

    try:
        table = markdown_table(load(Path(os.environ["MODELS_FILE"]) if os.environ.get("MODELS_FILE") else None))
    except CatalogueError as error:
        sys.exit(str(error))
    print(table)
