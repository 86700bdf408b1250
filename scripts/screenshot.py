"""Regenerate docs/screenshot.png (desktop, 1280x900) and docs/screenshot-phone.png (390x844): the real app
(``app.py``) asked one question in headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright, as
``tests/test_browser.py`` does), each saved as the screen shows it once the answer has finished streaming.

    .venv/bin/python -m scripts.screenshot --model models/default --question "How is glaucoma treated?"
    .venv/bin/python -m scripts.screenshot --no-model          # NIH summaries, as on a first start
(run from the checkout: it reuses tests/test_browser.py's launch recipe)

The app is started by ``gpt2chat.serving.server.served_app`` on a free local port with its ratings store in a
temporary directory (the rating buttons show, nothing is written to the repository). Exits 2 with a one-line
reason when Chromium, the model or the app is not available.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.test_browser import ANSWER_TIMEOUT_MS, CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE  # one launch recipe

REPO = Path(__file__).resolve().parent.parent

START_TIMEOUT_S = 600  # a cold start on a loaded 2-core machine (model load, index, compilation) takes minutes


def capture(url: str, question: str, shots: list[tuple[dict, Path]]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for size, out in shots:
                page = browser.new_context(viewport=size).new_page()  # a fresh browser storage: no saved chats
                page.goto(url, wait_until="domcontentloaded")
                page.locator("#gpt2chat-disclaimer").wait_for(timeout=ANSWER_TIMEOUT_MS)
                textbox = page.get_by_label("Your health question")
                textbox.fill(question)
                textbox.press("Enter")
                page.locator('[data-testid="bot"]').last.wait_for(timeout=ANSWER_TIMEOUT_MS)
                page.get_by_role("button", name="Send").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
                page.wait_for_timeout(1500)  # the follow-up suggestions render just after the answer
                print(page.locator('[data-testid="bot"]').last.inner_text())
                out.write_bytes(page.screenshot())
                print(f"wrote {out} ({size['width']}x{size['height']})")
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.screenshot", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default="models/default", help="preset directory (default: %(default)s)")
    source.add_argument("--no-model", action="store_true", help="serve NIH summaries only (app.py --no-model)")
    parser.add_argument("--question", default="How is glaucoma treated?", help="(default: %(default)s)")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshot.png"), help="(default: docs/screenshot.png)")
    parser.add_argument("--phone-out", default=str(REPO / "docs" / "screenshot-phone.png"),
                        help="(default: docs/screenshot-phone.png)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"error: {CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    if not args.no_model and not Path(args.model).is_dir():
        print(f"error: no model directory {args.model} (train one, or use --no-model)", file=sys.stderr)
        return 2
    from gpt2chat.serving.server import served_app

    with tempfile.TemporaryDirectory(prefix="gpt2chat-screenshot-") as scratch:
        env = {"GPT2CHAT_FEEDBACK_DB": str(Path(scratch) / "feedback.sqlite3"),
               "GPT2CHAT_FEEDBACK_REPO": ""}  # never sync a screenshot session to the Hub
        if not args.no_model:
            env["GPT2CHAT_MODEL"] = str(Path(args.model).resolve())
        try:
            with served_app(REPO, Path(scratch) / "app.log", env=env, boot_timeout_s=START_TIMEOUT_S,
                            args=["--no-model"] if args.no_model else []) as app:
                capture(app.url + "/", args.question, [(DESKTOP, Path(args.out)), (PHONE, Path(args.phone_out))])
        except Exception as error:  # noqa: BLE001  (one line for the user, whatever failed)
            print(f"error: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                  file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
