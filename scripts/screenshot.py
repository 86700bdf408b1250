"""Regenerate docs/screenshot.png: the real app (``app.py``) with a trained model, asked one question in headless
Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright, as ``tests/test_browser.py`` does).

    .venv/bin/python -m scripts.screenshot --model models/default   # from the checkout: it reuses tests/ --question "How is glaucoma treated?"

The app is started by ``gpt2chat.serving.server.served_app`` on a free local port with its ratings store in a
temporary directory (the rating buttons show, nothing is written to the repository), the answer is awaited until
it has finished streaming, and the page is saved. Exits 2 with a one-line reason when Chromium, the model or the
app is not available.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.test_browser import ANSWER_TIMEOUT_MS, CHROMIUM, CHROMIUM_ARGS  # one launch recipe

REPO = Path(__file__).resolve().parent.parent

START_TIMEOUT_S = 600  # a cold start on a loaded 2-core machine (model load, index, compilation) takes minutes


def capture(url: str, question: str, out: Path, width: int, height: int) -> None:
    from playwright.sync_api import sync_playwright

    from gpt2chat.serving.ui import DISCLAIMER

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("Not medical advice").wait_for(timeout=ANSWER_TIMEOUT_MS)
            textbox = page.get_by_placeholder("Type a health question…")
            textbox.fill(question)
            textbox.press("Enter")
            bot = page.locator('[data-testid="bot"]').last
            bot.get_by_text(DISCLAIMER[:40]).wait_for(timeout=ANSWER_TIMEOUT_MS)
            page.locator("button.submit-button").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
            page.wait_for_timeout(1500)  # the follow-up suggestions render just after the answer
            # The chat log scrolls to its end while streaming; show the question and the answer from the top.
            page.evaluate("document.querySelectorAll('.bubble-wrap, [role=log]').forEach(e => e.scrollTop = 0)")
            print(bot.inner_text())
            out.write_bytes(page.screenshot(full_page=True))
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/default", help="preset directory (default: %(default)s)")
    parser.add_argument("--question", default="How is glaucoma treated?", help="(default: %(default)s)")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshot.png"), help="(default: docs/screenshot.png)")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"error: {CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    if not Path(args.model).is_dir():
        print(f"error: no model directory {args.model}", file=sys.stderr)
        return 2
    from gpt2chat.serving.server import served_app

    with tempfile.TemporaryDirectory(prefix="gpt2chat-screenshot-") as scratch:
        env = {"GPT2CHAT_MODEL": str(Path(args.model).resolve()),
               "GPT2CHAT_FEEDBACK_DB": str(Path(scratch) / "feedback.sqlite3"),
               "GPT2CHAT_FEEDBACK_REPO": ""}  # never sync a screenshot session to the Hub
        try:
            with served_app(REPO, Path(scratch) / "app.log", env=env, boot_timeout_s=START_TIMEOUT_S) as app:
                capture(app.url + "/", args.question, Path(args.out), args.width, args.height)
        except Exception as error:  # noqa: BLE001  (one line for the user, whatever failed)
            print(f"error: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                  file=sys.stderr)
            return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
