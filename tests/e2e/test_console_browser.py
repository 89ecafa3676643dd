"""A person's view: headless Chromium runs commands in the sandbox console and sees the results."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.sandbox.run import start_sandbox

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(database_path=tmp_path / "data" / "bot.sqlite3", video_dir=tmp_path / "data" / "videos",
                        sandbox_dir=tmp_path / "data" / "sandbox", sandbox_port=0, web_port=0,
                        simulated_speed=0.002, simulated_fps=2, secret_key="browser-" + "x" * 32)
    server, console, bot, task = await start_sandbox(settings)
    try:
        yield console.url
    finally:
        await bot.close()
        task.cancel()
        await console.stop()
        await server.stop()


async def test_console_runs_a_command_and_shows_the_video(sandbox: str, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        try:
            page = await browser.new_page()
            await page.goto(sandbox)
            # The composer offers what the bot synced, including its options.
            await expect(page.locator("#cmd option[value='kling']")).to_have_count(1)
            await expect(page.locator("#cmd option[value='job show']")).to_have_count(1)
            await page.select_option("#cmd", "kling")
            await expect(page.locator("#opts select[name='aspect_ratio'] option")).to_have_count(4)
            await page.fill("#opts textarea[name='prompt']", "A paper boat drifts down a rainy street.")
            await page.select_option("#opts select[name='duration']", "5")
            await page.click("#send")
            await expect(page.locator(".embed .t", has_text="Kling 2.0 · job #1")).to_be_visible(timeout=15_000)
            # The bot escapes echoed prompts; like Discord, the console shows them as typed.
            await expect(page.locator(".embed .d").first).to_have_text("A paper boat drifts down a rainy street.")
            video = page.locator("#messages video")
            await expect(video).to_have_count(1, timeout=30_000)
            source = await video.first.get_attribute("src")
            assert source and source.endswith(".mp4")
            # Buttons on the result work: a rerun is a new job.
            await page.locator("#messages button", has_text="Rerun").click()
            await expect(page.locator(".embed .t", has_text="job #2")).to_be_visible(timeout=15_000)
            await page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
        finally:
            await browser.close()
