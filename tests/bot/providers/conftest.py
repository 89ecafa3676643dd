"""Fixtures: the loopback fake providers and settings that point at them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from bot.config import Settings
from tests.bot.providers.fakes import KLING_ACCESS, KLING_SECRET, OPENAI_KEY, REPLICATE_TOKEN, FakeProviders


@pytest.fixture
def provider_settings(fake: FakeProviders, tmp_path: Path) -> Settings:
    return Settings(
        replicate_api_base=f"{fake.base}/replicate", replicate_api_token=REPLICATE_TOKEN,
        openai_base_url=f"{fake.base}/openai/v1", openai_api_key=OPENAI_KEY,
        kling_api_base=f"{fake.base}/kling", kling_access_key=KLING_ACCESS, kling_secret_key=KLING_SECRET,
        provider_timeout_seconds=2.0, video_dir=tmp_path / "videos",
    )


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "ref.png"
    Image.new("RGB", (640, 480), (10, 200, 10)).save(path)
    return path
