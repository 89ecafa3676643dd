"""A person's view: headless Chromium runs commands in the sandbox console and sees the results."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.sandbox.discord import LoopbackDiscord
from bot.sandbox.run import start_sandbox

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[str, LoopbackDiscord]]:
    settings = Settings(database_path=tmp_path / "data" / "bot.sqlite3", video_dir=tmp_path / "data" / "videos",
                        sandbox_dir=tmp_path / "data" / "sandbox", sandbox_port=0, web_port=0,
                        simulated_speed=0.002, simulated_fps=2, secret_key="browser-" + "x" * 32)
    server, console, bot, task = await start_sandbox(settings)
    try:
        yield console.url, server
    finally:
        await bot.close()
        task.cancel()
        await console.stop()
        await server.stop()


@pytest.fixture
def sandbox(running: tuple[str, LoopbackDiscord]) -> str:
    return running[0]


@contextlib.asynccontextmanager
async def browser_page(url: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        try:
            page = await browser.new_page()
            await page.goto(url)
            yield page
        finally:
            await browser.close()


async def pick(page: Any, typed: str, command: str) -> None:
    """Type a slash and part of a name, as in Discord, and pick the command from the list."""
    from playwright.async_api import expect

    await page.click("#slash")
    await page.fill("#slash", typed)
    await expect(page.locator(f"#picker .pick[data-name='{command}']")).to_be_visible()
    await page.locator(f"#picker .pick[data-name='{command}']").click()
    await expect(page.locator("#slash")).to_have_value(f"/{command}")


async def test_console_runs_a_command_and_shows_the_video(sandbox: str, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with browser_page(sandbox) as page:
        # The composer offers what the bot synced, subcommands included, picked by typing `/`.
        await page.click("#slash")
        await expect(page.locator("#picker .pick[data-name='job show']")).to_have_count(1)
        await page.fill("#slash", "/kli")
        await expect(page.locator("#picker .pick")).to_have_count(1)
        await page.keyboard.press("Enter")
        await expect(page.locator("#slash")).to_have_value("/kling")
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


async def test_the_draft_survives_a_refusal_and_a_delivery(running: tuple[str, LoopbackDiscord]) -> None:
    """Text, options and image stay in the composer while the bot refuses it and other people's videos arrive."""
    from playwright.async_api import expect

    url, server = running
    async with browser_page(url) as page:
        await page.select_option("#user", str(server.alice))
        await pick(page, "/kl", "kling")
        await expect(page.locator("#opts")).to_contain_text("default: 5")  # option defaults, from the bot
        prompt = "A heron waits in the reeds at dawn."
        await page.fill("#opts textarea[name='prompt']", prompt)
        await page.select_option("#opts select[name='duration']", "10")
        await page.set_input_files("#opts input[name='image']", files=[
            {"name": "heron.gif", "mimeType": "image/gif", "buffer": b"GIF89a not a picture the bot takes"}])

        async def draft() -> tuple[str, str, int, str]:
            return (await page.input_value("#opts textarea[name='prompt']"),
                    await page.input_value("#opts select[name='duration']"),
                    await page.locator("#opts input[name='image']").evaluate("el => el.files.length"),
                    await page.input_value("#slash"))

        await page.click("#send")  # the bot refuses a GIF, privately
        await expect(page.locator("#status")).to_contain_text("draft is kept", timeout=15_000)
        await expect(page.locator(".msg", has_text="PNG, JPEG or WebP")).to_be_visible()
        assert await draft() == (prompt, "10", 1, "/kling")

        # Someone else's job is acknowledged, progresses and is delivered while the draft waits.
        long_prompt = "x" * 400  # one unbroken word: it must wrap, not widen the page
        await (await server.invoke("/kling", user=server.bob, channel=server.general,
                                   options={"prompt": long_prompt})).wait_response()
        await server.wait_for_message(server.general, lambda m: "ready" in m["content"] and m["attachments"],
                                      within=30)
        await expect(page.locator("#messages video")).to_have_count(1, timeout=30_000)
        assert await draft() == (prompt, "10", 1, "/kling")
        # Once the video knows its size the page is taller; the reader, who was at the bottom, stays there.
        await page.wait_for_function("() => document.querySelector('#messages video').readyState >= 1")
        await page.wait_for_function(
            "() => { const b = document.getElementById('messages'); return b.scrollHeight > b.clientHeight"
            " && b.scrollHeight - b.scrollTop - b.clientHeight < 5; }", timeout=5_000)
        overflow = await page.locator("#messages").evaluate("el => el.scrollWidth - el.clientWidth")
        assert overflow <= 0


async def test_admin_only_commands_are_hidden_from_members_and_markdown_renders(sandbox: str) -> None:
    from playwright.async_api import expect

    async with browser_page(sandbox) as page:
        await page.click("#slash")
        await page.fill("#slash", "/credits")
        await expect(page.locator("#picker .pick[data-name='credits-grant']")).to_have_count(1)  # admin acts
        users = await page.locator("#user option").all_text_contents()
        await page.select_option("#user", label=users[1])  # a member without Manage Server
        await page.fill("#slash", "/credits")
        await expect(page.locator("#picker .pick[data-name='credits']")).to_have_count(1)
        await expect(page.locator("#picker .pick[data-name='credits-grant']")).to_have_count(0)
        text = "\\*not italic\\* **bold** `a *b*`\n```py\nx = *1*\n```"
        html = await page.evaluate("text => richText(text)", text)
        assert "*not italic*" in html and "<b>bold</b>" in html and "<code>a *b*</code>" in html
        assert '<pre class="codeblock"><code data-lang="py">x = *1*</code></pre>' in html
