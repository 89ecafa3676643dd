"""The prices in force: the catalogue's, then legacy PRICE_* settings, then `/credits-set-price` overrides.

Price keys are catalogue model ids (`kling-2.0`), with `:high` for a high-resolution tier
(`sora-2-pro:high`). Keys stored before the catalogue existed (`kling_per_second`, …) still apply:
they are read as the models those prices used to mean.
"""

from __future__ import annotations

from bot import catalogue
from bot.config import Settings
from bot.requests import PriceTable
from storage import Store

# The three keys of the old fixed price table, and which catalogue price each one now sets.
LEGACY_KEYS = ("kling_per_second", "sora_per_second", "sora_high_per_second")


def legacy_key(key: str) -> str | None:
    """The catalogue price key an old key (PRICE_* setting or stored override) stands for."""
    books = catalogue.current()
    if key == "kling_per_second":
        return catalogue.price_key(books.default("kling"))
    if key == "sora_per_second":
        return catalogue.price_key(books.default("sora"))
    if key == "sora_high_per_second":
        high = books.high_default("sora")
        return catalogue.price_key(high, "high") if high is not None else None
    return None


def _translate(values: dict[str, int]) -> dict[str, int]:
    """Old keys first, so an override stored under the new key wins over one under the old key."""
    translated: dict[str, int] = {}
    for key, credits in values.items():
        if key in LEGACY_KEYS and (new := legacy_key(key)) is not None:
            translated[new] = credits
    translated.update({key: credits for key, credits in values.items() if key not in LEGACY_KEYS})
    return translated


def configured_prices(settings: Settings) -> PriceTable:
    """The catalogue's prices with the deprecated PRICE_* settings applied where set."""
    legacy = {"kling_per_second": settings.price_kling_per_second,
              "sora_per_second": settings.price_sora_per_second,
              "sora_high_per_second": settings.price_sora_high_per_second}
    return PriceTable(_translate({key: value for key, value in legacy.items() if value is not None}))


async def current_prices(settings: Settings, store: Store) -> PriceTable:
    """Configured prices with `/credits-set-price` overrides applied."""
    overrides = configured_prices(settings).overrides
    overrides.update(_translate(await store.prices.overrides()))
    return PriceTable(overrides)


def price_lines(table: PriceTable) -> list[str]:
    """What each enabled model costs, for /credits and /models."""
    lines = []
    for spec in catalogue.current().enabled():
        for tier in spec.tiers:
            per_second = table.per_second(spec, tier)
            name = spec.label if tier == "standard" else f"{spec.label} {tier}"
            lengths = ", ".join(f"{seconds} s: {per_second * seconds}" for seconds in spec.durations)
            lines.append(f"{name} (`{catalogue.price_key(spec, tier)}`): {lengths} credits")
    if any(spec.own_key for spec in catalogue.current().enabled()):
        lines.append("Sora with your own OpenAI key: 0 credits (OpenAI bills you)")
    return lines
