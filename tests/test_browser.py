"""The app in a real browser: Debian's chromium driven by Playwright (its Python driver, not its browser download),
at a desktop (1280x900) and a phone (390x844) size, with an axe-core accessibility scan.

    apt-get install -y chromium        # once; the tests skip, saying why, when chromium cannot start
    bash scripts/setup.sh --dev        # also installs axe-core from npm into .cache/npm
    GPT2CHAT_SCREENSHOT=docs/screenshot.png pytest tests/test_browser.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gpt2chat.chat.engine import ChatEngine
from gpt2chat.chat.grounding import split_sentences
from gpt2chat.serving import ui
from gpt2chat.serving.feedback import FeedbackStore
from gpt2chat.serving.server import free_port
from gpt2chat.serving.ui import DISCLAIMER, REPLY_DISCLAIMER

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 180_000
AXE = Path(__file__).resolve().parent.parent / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"  # setup --dev
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
SIZES = pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
EMERGENCY = "My dad has crushing chest pain and can't breathe"


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


def launched(demo) -> tuple[str, object]:
    demo.queue(default_concurrency_limit=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **ui.launch_options())
    return f"http://127.0.0.1:{port}", demo


@pytest.fixture(scope="module")
def summaries_app(tiny_engine, tmp_path_factory):
    """The app in this process as on a first start: no model, so answers are NIH summaries (fast, deterministic)."""
    engine = ChatEngine(None, tiny_engine.index, masker=tiny_engine.masker, safety=tiny_engine.safety)
    store = FeedbackStore(tmp_path_factory.mktemp("ratings") / "feedback.sqlite3", tiny_engine.masker)
    url, demo = launched(ui.build_app(engine, feedback=store))
    try:
        yield url
    finally:
        demo.close()


def new_page(browser, url: str, size: dict, scheme: str = "light"):
    page = browser.new_page(viewport=size, color_scheme=scheme)
    page.goto(url + ("/?__theme=dark" if scheme == "dark" else "/"), wait_until="domcontentloaded")
    page.locator("#gpt2chat-disclaimer").get_by_text("Not medical advice").wait_for()
    return page


def ask(page, question: str):
    """Send a question and wait until its reply has finished streaming; the reply's locator."""
    textbox = page.get_by_label("Your health question")
    textbox.fill(question)
    textbox.press("Enter")
    page.locator('[data-testid="user"]').filter(has_text=question[:30]).last.wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.get_by_role("button", name="Send").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_timeout(500)  # the last streamed update and the follow-ups render just after
    return page.locator('[data-testid="bot"]').last


def in_view(page, locator) -> bool:
    box = locator.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] < height and box["y"] + min(box["height"], 80) <= height


def visible_sentences(text: str) -> list[str]:
    return [" ".join(s.split()).lower() for line in text.splitlines() for s in split_sentences(line)
            if len(s.split()) >= 4]


def test_question_in_the_browser_streams_an_answer_with_sources(browser, live_app, sample_records,  # noqa: F811
                                                                tmp_path):
    """The repository's app.py with a (tiny) model, as a user reaches it."""
    page = new_page(browser, live_app, DESKTOP)
    bot = ask(page, sample_records[0].question)
    assert bot.locator("a[href^='http']").count() >= 1 and re.search(r"Sources?:", bot.inner_text())
    assert REPLY_DISCLAIMER in bot.inner_text() and DISCLAIMER not in bot.inner_text()
    shot = page.screenshot(full_page=True)
    (tmp_path / "app.png").write_bytes(shot)
    if os.environ.get("GPT2CHAT_SCREENSHOT"):
        Path(os.environ["GPT2CHAT_SCREENSHOT"]).write_bytes(shot)
    page.close()


@SIZES
def test_a_reply_is_one_answer_with_named_sources_and_the_nih_text_folded(browser, summaries_app, sample_records,
                                                                         size):
    page = new_page(browser, summaries_app, size)
    question = sample_records[0].question
    bot = ask(page, question)
    # The new question is at the top of the view, and the keyboard is back in the input.
    assert in_view(page, page.locator('[data-testid="user"]').last)
    assert page.evaluate("document.activeElement === document.querySelector('#gpt2chat-input textarea')")
    text = bot.inner_text()  # what is rendered: a closed <details> shows only its summary
    sentences = visible_sentences(text)
    assert len(sentences) == len(set(sentences)), text  # nothing said twice
    assert text.count(REPLY_DISCLAIMER) == 1 and DISCLAIMER not in text  # the full one stays on the page, once
    assert page.get_by_text(DISCLAIMER).count() == 1
    link = bot.locator("a[href^='http']").first
    assert re.fullmatch(r".+ — .+", link.inner_text().strip()), link.inner_text()  # "Title — Site"
    folded = bot.locator("details").first
    assert folded.locator("summary").inner_text().startswith("Show the NIH text")
    assert folded.get_attribute("open") is None and not folded.locator("mark").first.is_visible()
    folded.locator("summary").click()
    assert folded.locator("mark").first.is_visible()  # the quoted sentences, highlighted in the NIH text
    page.close()


@SIZES
def test_an_emergency_reply_is_urgent_in_view_and_callable(browser, summaries_app, sample_records, size):
    page = new_page(browser, summaries_app, size)
    ask(page, sample_records[0].question)
    page.locator("#gpt2chat-chat [role=log], #gpt2chat-chat .bubble-wrap").first.evaluate("e => e.scrollTop = 0")
    page.evaluate("window.scrollTo(0, 0)")  # scrolled up to read: the reply still comes into view
    ask(page, EMERGENCY)
    callout = page.locator(".gpt2chat-urgent[role=alert]").last
    assert callout.is_visible() and in_view(page, callout)
    assert callout.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(139, 0, 0)"  # white on dark red
    calls = callout.locator("a[href^='tel:']")
    assert calls.count() >= 2 and calls.first.get_attribute("href") == "tel:911"
    assert all(box["height"] >= 44 and box["width"] >= 44 for box in (calls.nth(i).bounding_box()
                                                                      for i in range(calls.count())))
    page.close()


def test_phone_layout_keeps_the_input_on_screen_with_large_touch_targets(browser, summaries_app, sample_records):
    page = new_page(browser, summaries_app, PHONE)
    assert not page.locator("#gpt2chat-header p").first.is_visible()  # the header shrinks to its title
    ask(page, sample_records[0].question)
    textbox = page.get_by_label("Your health question")
    assert in_view(page, textbox)
    page.mouse.wheel(0, 3000)
    page.wait_for_timeout(300)
    assert in_view(page, textbox)  # fixed at the bottom however far the page scrolls
    # Links inside sentences are exempt (WCAG 2.5.8); every control is measured.
    small = page.evaluate("""() => [...document.querySelectorAll('button, textarea, [role=button], summary, footer a')]
        .filter(e => e.offsetParent !== null && !e.closest('.hide, [hidden]'))
        .map(e => [e.getBoundingClientRect(), e]).filter(([r]) => r.width > 0 && (r.width < 44 || r.height < 44))
        .map(([r, e]) => `${Math.round(r.width)}x${Math.round(r.height)} ${e.tagName} ${e.getAttribute('aria-label')
                           || e.innerText.slice(0, 30)}`)""")
    assert small == [], small
    page.close()


def test_desktop_shows_the_input_without_scrolling(browser, summaries_app):
    page = new_page(browser, summaries_app, DESKTOP)
    assert in_view(page, page.get_by_label("Your health question"))
    page.close()


@SIZES
def test_a_chat_survives_a_reload_and_can_be_exported_and_deleted(browser, summaries_app, sample_records, size,
                                                                  tmp_path):
    context = browser.new_context(viewport=size, accept_downloads=True)  # one browser storage for the reloads
    page = context.new_page()
    page.goto(summaries_app + "/", wait_until="domcontentloaded")
    question = sample_records[0].question
    bot = ask(page, question)
    cited = bot.locator("a[href^='http']").first.get_attribute("href")
    page.reload(wait_until="domcontentloaded")
    user = page.locator('[data-testid="user"]').filter(has_text=question[:30])
    user.first.wait_for(timeout=30_000)  # reopened from the browser's storage
    assert page.get_by_text(question[:20]).count() >= 2  # in the chat and in the list of saved chats

    with page.expect_download() as download:
        page.get_by_role("button", name="Export this chat (Markdown)").click()
    exported = Path(download.value.path()).read_text()
    assert exported.startswith("# gpt2chat conversation") and f"## You\n\n{question}" in exported
    assert cited in exported and "Show the NIH text" not in exported and "<" not in exported

    page.locator("#gpt2chat-chat").get_by_label("Clear").click()  # delete this chat
    page.wait_for_timeout(1000)
    page.reload(wait_until="domcontentloaded")
    page.locator("#gpt2chat-disclaimer").wait_for()
    page.wait_for_timeout(1500)
    assert page.locator('[data-testid="user"]').count() == 0 and page.get_by_text(question[:20]).count() == 0
    context.close()


def test_status_line_and_advanced_controls_follow_the_engine(browser, summaries_app, tiny_engine, tmp_path_factory):
    page = new_page(browser, summaries_app, DESKTOP)
    assert "answers are summaries of the NIH pages" in page.locator("#gpt2chat-status").inner_text()
    page.get_by_text("Advanced").click()
    page.get_by_label("Show masked text").wait_for(state="visible")  # the accordion opens: is_visible does not wait
    assert not page.get_by_label("Temperature").first.is_visible()  # no model text: nothing to tune
    page.close()
    url, demo = launched(ui.build_app(tiny_engine))  # a model serves its own text: the controls matter
    try:
        page = new_page(browser, url, DESKTOP)
        page.get_by_text("Advanced").click()
        page.get_by_label("Temperature").first.wait_for(state="visible")
        assert tiny_engine.status.detail in page.locator("#gpt2chat-status").inner_text()
        page.close()
    finally:
        demo.close()


@pytest.mark.parametrize("size, scheme", [(DESKTOP, "light"), (DESKTOP, "dark"), (PHONE, "light"), (PHONE, "dark")],
                         ids=["desktop-light", "desktop-dark", "phone-light", "phone-dark"])
def test_accessibility_scan_finds_no_serious_violation(browser, summaries_app, sample_records, size, scheme):
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing at {AXE}: bash scripts/setup.sh --dev installs it")
    page = new_page(browser, summaries_app, size, scheme)
    page.get_by_label("Your health question").wait_for()  # named controls: found by their names
    page.get_by_role("button", name="Send").wait_for()
    ask(page, sample_records[0].question)
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', "
                           "'wcag21aa']})")
    serious = [f"{v['impact']} {v['id']}: {[n['target'] for n in v['nodes'][:3]]}" for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
    page.close()
