"""The app in a real browser: Debian's chromium driven by Playwright (its Python driver, not its browser download).

    apt-get install -y chromium        # once; the test skips, saying why, when chromium cannot start
    GPT2CHAT_SCREENSHOT=docs/screenshot.png pytest tests/test_browser.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpt2chat.serving.ui import DISCLAIMER
from tests.test_ui import live_app  # noqa: F401  (the module-scoped served app)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import Error, sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Error as error:
            reason = str(error).strip().splitlines()[0]
            print(f"chromium cannot start: {reason}")
            pytest.skip(f"chromium cannot start: {reason}")
        yield browser
        browser.close()


def test_question_in_the_browser_streams_an_answer_with_sources(browser, live_app, sample_records, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    page.goto(live_app, wait_until="domcontentloaded")
    page.get_by_text("Not medical advice").wait_for()
    textbox = page.get_by_placeholder("Type a health question…")
    textbox.fill(sample_records[0].question)
    textbox.press("Enter")

    bot = page.locator('[data-testid="bot"]').last
    bot.get_by_text(DISCLAIMER[:40]).wait_for(timeout=ANSWER_TIMEOUT_MS)  # the first streamed chunk
    # The stop button shows while tokens stream; the answer is complete once the submit button is back.
    page.locator("button.submit-button").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    links = bot.locator("a[href^='http']")
    assert links.count() >= 1 and "Sources:" in bot.inner_text()
    assert DISCLAIMER[:40] in bot.inner_text()

    shot = page.screenshot(full_page=True)
    (tmp_path / "app.png").write_bytes(shot)
    if os.environ.get("GPT2CHAT_SCREENSHOT"):
        Path(os.environ["GPT2CHAT_SCREENSHOT"]).write_bytes(shot)
    page.close()
