"""The price table in force: configured defaults, overridden by admins at runtime."""

from __future__ import annotations

from bot.config import Settings
from bot.requests import KlingRequest, PriceTable, SoraRequest
from storage import Store


def configured_prices(settings: Settings) -> PriceTable:
    return PriceTable(
        kling_per_second=settings.price_kling_per_second,
        sora_per_second=settings.price_sora_per_second,
        sora_high_per_second=settings.price_sora_high_per_second,
    )


async def current_prices(settings: Settings, store: Store) -> PriceTable:
    """Defaults from settings with `/credits set-price` overrides applied."""
    base = configured_prices(settings).model_dump()
    base.update(await store.prices.overrides())
    return PriceTable(**base)


def price_lines(table: PriceTable) -> list[str]:
    """What each model option costs, for /credits and /models."""
    lines = []
    for duration in (5, 10):
        lines.append(f"Kling {duration} s: {KlingRequest(prompt='x', duration=duration).price(table)} credits")
    for resolution in ("standard", "high"):
        for duration in (4, 8, 12):
            cost = SoraRequest(prompt="x", duration=duration, resolution=resolution).price(table)
            lines.append(f"Sora {resolution} {duration} s: {cost} credits")
    lines.append("Sora with your own OpenAI key: 0 credits (OpenAI bills you)")
    return lines
