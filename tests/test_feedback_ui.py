"""Ratings and follow-ups in the app: the like handler and /rate API without a browser, then a thumb clicked in
headless Chromium (Debian's /usr/bin/chromium, as in test_browser.py) and the stored row checked."""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import time
import types
from pathlib import Path

import gradio as gr
import pytest

from gpt2chat.serving import ui
from gpt2chat.corpus.data import focus_key
from gpt2chat.chat.engine import EXTRACT_ANSWER, MODEL_ANSWER, NO_ANSWER, ChatReply, Source
from gpt2chat.serving.feedback import FeedbackStore
from gpt2chat.serving.server import free_port
from gpt2chat.chat.followups import FollowupFinder, readable
from tests.test_browser import ANSWER_TIMEOUT_MS, browser  # noqa: F401  (the module-scoped chromium)

PII_QUESTION = "I'm John Smith, SSN 536-22-8741. What is glaucoma?"
PII_VALUES = (b"John", b"Smith", b"536-22-8741")
SOURCES = [Source("Glaucoma", "https://nei.nih.gov/glaucoma", "NEI"),
           Source("Gout", "https://niams.nih.gov/g", "NIAMS")]


def record_with_follow_ups(records):
    """A sample question whose focus has answers of at least four question types."""
    types_per_focus = collections.defaultdict(set)
    for record in records:
        types_per_focus[focus_key(record.focus)].add(record.question_type)
    return next(r for r in records if len(types_per_focus[focus_key(r.focus)]) >= 4)


@pytest.mark.parametrize("kind", [MODEL_ANSWER, EXTRACT_ANSWER, NO_ANSWER])
def test_reply_facts_read_back_what_render_reply_wrote(kind):
    reply = ChatReply(answer="Glaucoma damages the optic nerve.", answer_kind=kind, sources=list(SOURCES),
                      evidence="Glaucoma is a group of diseases.", finished=True)
    if kind == NO_ANSWER:
        reply = ChatReply(category="emergency", notice="Call your local emergency number now.", finished=True)
    facts = ui.reply_facts(ui.render_reply(reply))
    assert facts["shown"] == kind
    if kind != NO_ANSWER:
        assert facts["urls"] == [s.url for s in SOURCES] and facts["sources"] == ["NEI", "NIAMS"]


def test_rated_turn_finds_the_question_an_answer_replied_to():
    history = [{"role": "user", "content": "What is gout?"}, {"role": "assistant", "content": "Arthritis."},
               {"role": "user", "content": [{"type": "text", "text": "And glaucoma?"}]},
               {"role": "assistant", "content": "An eye disease."}]
    assert ui.rated_turn(history, 3) == ("And glaucoma?", "An eye disease.")
    assert ui.rated_turn(history, 1) == ("What is gout?", "Arthritis.")


def like(index: int, liked, value: str = "") -> gr.LikeData:
    return gr.LikeData(None, {"index": index, "value": [value], "liked": liked})


def test_like_and_dislike_are_stored_masked_end_to_end(tiny_engine, masker, tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    chat = ui.make_chat_fn(tiny_engine)
    *_, answer = chat(PII_QUESTION, [], 0.0, 32, True, False)
    answer = answer.content if isinstance(answer, gr.ChatMessage) else answer
    history = [{"role": "user", "content": PII_QUESTION}, {"role": "assistant", "content": answer}]
    rate = ui.make_like_fn(store, tiny_engine)
    request = types.SimpleNamespace(session_hash="browser-session")

    assert rate(like(1, True), history, "", 0.0, 32, True, False, request) == ""
    assert rate(like(1, "Wrong"), history, "my name John Smith is in it", 0.0, 32, True, False, request) == ""
    assert rate(like(1, "Wrong"), history, "again", 0.0, 32, True, False, request) == "again"  # sent twice
    assert rate(like(1, ""), history, "kept", 0.0, 32, True, False, request) == "kept"  # a thumb clicked off

    up, flagged = store.rows()
    assert up["liked"] and not flagged["liked"] and flagged["reason"].startswith("wrong — my name")
    assert "<US_SSN>" in up["question"] and "glaucoma" in up["question"]
    assert up["session_id"] == "browser-session" and up["settings"]["max_new_tokens"] == 32
    assert up["shown"] == ui.reply_facts(answer)["shown"] and up["model_id"] == tiny_engine.config.model
    assert up["urls"] == ui.reply_facts(answer)["urls"]
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("feedback.sqlite3*"))
    assert not any(value in on_disk for value in PII_VALUES)


def test_rate_api_stores_a_masked_rating_and_refuses_bad_input(tiny_engine, masker, tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", masker)
    rate = ui.make_rate_fn(store, tiny_engine)
    answer = ui.render_reply(ChatReply(answer="An eye disease.", answer_kind=MODEL_ANSWER, sources=SOURCES[:1],
                                       finished=True))
    assert rate(PII_QUESTION, answer, False, "unsafe", "client-7") == "saved"
    [row] = store.rows()
    assert row["session_id"] == "client-7" and row["sources"] == ["NEI"] and "536-22-8741" not in row["question"]
    with pytest.raises(gr.Error, match="liked must be true or false"):
        rate("q", "a", "maybe")
    broken = FeedbackStore(tmp_path / "missing" / "x.sqlite3", masker, create=False)
    assert ui.make_rate_fn(broken, tiny_engine)("q", answer, True) == "not saved: the feedback store is unavailable"


def test_the_final_reply_offers_follow_ups_of_the_same_focus(tiny_engine, sample_records):
    record = record_with_follow_ups(sample_records)
    chat = ui.make_chat_fn(tiny_engine, FollowupFinder.from_index(tiny_engine.index))
    *_, final = chat(record.question, [], 0.0, 16, True, False)
    assert isinstance(final, gr.ChatMessage) and 2 <= len(final.options) <= 3
    assert readable(record.question) not in {option["value"] for option in final.options}


# --- in a browser -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rated_app(tiny_engine, masker, tmp_path_factory):
    """The app in this process, its ratings going to a temporary database."""
    store = FeedbackStore(tmp_path_factory.mktemp("ratings") / "feedback.sqlite3", masker)
    demo = ui.build_app(tiny_engine, feedback=store)
    demo.queue(default_concurrency_limit=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **ui.launch_options())
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        demo.close()


def wait_for_rows(store: FeedbackStore, count: int, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            rows = store.rows()
            if len(rows) >= count:
                return rows
        time.sleep(0.2)
    pytest.fail(f"expected {count} stored ratings, found {len(store.rows())}")


def test_thumb_and_flag_clicked_in_the_browser_store_masked_rows(browser, rated_app, sample_records):  # noqa: F811
    url, store = rated_app
    record = record_with_follow_ups(sample_records)
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("personal details removed").first.wait_for()  # the one-line notice
    textbox = page.get_by_placeholder("Type a health question…")
    textbox.fill(f"I'm John Smith, SSN 536-22-8741. {record.question}")
    textbox.press("Enter")
    page.locator("button.submit-button").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    follow_up = page.locator("button.option").first
    follow_up.wait_for(timeout=ANSWER_TIMEOUT_MS)  # offered once the answer is complete
    page.get_by_label("Dislike").last.click()

    [row] = wait_for_rows(store, 1)
    assert row["liked"] is False and "<US_SSN>" in row["question"] and record.focus.split()[0] in row["question"]
    assert row["session_id"] and row["model_id"] and row["urls"]
    on_disk = b"".join(p.read_bytes() for p in Path(store.path).parent.glob("feedback.sqlite3*"))
    assert not any(value in on_disk for value in PII_VALUES)

    page.get_by_label("Feedback").last.click()  # the flag menu of reasons
    page.locator(".extra-feedback-option", has_text="Wrong").click()
    flagged = wait_for_rows(store, 2)[1]
    time.sleep(2)  # Gradio sends a flag-menu click twice: the second must not become a row
    assert len(store.rows()) == 2 and flagged["reason"] == "wrong" and flagged["liked"] is False

    question = follow_up.inner_text().strip()
    follow_up.click()  # a follow-up is sent as the next question
    page.locator('[data-testid="user"]').filter(has_text=question).wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.close()
