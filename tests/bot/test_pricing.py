"""Prices in force: catalogue, then the deprecated PRICE_* settings, then /credits-set-price overrides
(stored in the real database, both dialects), including overrides stored under the old keys."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings
from bot.pricing import current_prices, price_lines
from bot.requests import parse_request
from storage import Store


async def test_catalogue_prices_then_legacy_settings_then_overrides(store: Store, tmp_path: Path) -> None:
    settings = Settings(database_path=tmp_path / "x.sqlite3")
    kling = parse_request("kling", prompt="p", duration=10)
    turbo = parse_request("kling", prompt="p", duration=10, model_id="kling-2.5-turbo")
    high = parse_request("sora", prompt="p", duration=12, resolution="high")
    table = await current_prices(settings, store)
    assert (kling.price(table), turbo.price(table), high.price(table)) == (20, 30, 120)

    legacy = Settings(database_path=tmp_path / "x.sqlite3", price_kling_per_second=5, price_sora_high_per_second=1)
    table = await current_prices(legacy, store)
    assert (kling.price(table), turbo.price(table), high.price(table)) == (50, 30, 12)

    await store.prices.set("sora_high_per_second", 2, actor_id=1)  # stored by the old /credits-set-price
    await store.prices.set("kling-2.5-turbo", 7, actor_id=1)
    table = await current_prices(legacy, store)
    assert (kling.price(table), turbo.price(table), high.price(table)) == (50, 70, 24)
    await store.prices.set("sora-2-pro:high", 3, actor_id=1)  # the new key wins over the old one
    table = await current_prices(legacy, store)
    assert high.price(table) == 36
    assert "Kling 2.5 Turbo (`kling-2.5-turbo`): 5 s: 35, 10 s: 70 credits" in price_lines(table)
