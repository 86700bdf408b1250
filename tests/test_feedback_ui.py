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
from gpt2chat.modeling.generation import SamplingConfig
from gpt2chat.serving.feedback import AnswerLedger, FeedbackStore, RateLimit
from gpt2chat.serving.server import free_port
from gpt2chat.chat.followups import FollowupFinder, readable
from tests.test_browser import ANSWER_TIMEOUT_MS, browser  # noqa: F401  (the module-scoped chromium)

PII_QUESTION = "I'm John Smith, SSN 536-22-8741. What is glaucoma?"
PII_VALUES = (b"John", b"Smith", b"536-22-8741")
FAST_SAMPLING = SamplingConfig(max_new_tokens=32, temperature=0.0)


def record_with_follow_ups(records):
    """A sample question whose focus has answers of at least four question types."""
    types_per_focus = collections.defaultdict(set)
    for record in records:
        types_per_focus[focus_key(record.focus)].add(record.question_type)
    return next(r for r in records if len(types_per_focus[focus_key(r.focus)]) >= 4)


def like(index: int, liked, value: str = "") -> gr.LikeData:
    return gr.LikeData(None, {"index": index, "value": [value], "liked": liked})


def answered(tiny_engine, ledger, question=PII_QUESTION) -> tuple[list[dict], str]:
    chat = ui.make_chat_fn(tiny_engine, ledger=ledger)
    *_, answer = chat(question, [], 0.0, 32, True, False)
    answer = answer.content if isinstance(answer, gr.ChatMessage) else answer
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], answer

def test_like_and_dislike_store_the_servers_copy_masked(tiny_engine, masker, tmp_path):
    store, ledger = FeedbackStore(tmp_path / "feedback.sqlite3", masker), AnswerLedger()
    history, answer = answered(tiny_engine, ledger)
    reference = AnswerLedger.REFERENCE.search(answer).group(0)
    rate = ui.make_like_fn(store, ledger)
    request = types.SimpleNamespace(session_hash="browser-session", client=types.SimpleNamespace(host="10.0.0.1"))

    assert rate(like(1, True), history, request) == (None, "")
    assert rate(like(1, False), history, request) == (1, "")  # 👎: why, for this message?
    assert rate(like(1, "Wrong"), history, request)[0] is None
    assert rate(like(1, "Wrong"), history, request)[0] == {"__type__": "update"}  # sent twice
    assert rate(like(1, ""), history, request)[0] == {"__type__": "update"}  # a thumb clicked off
    send = ui.make_reason_fn(store, ledger)
    assert send(1, history, "my name John Smith is in it", request) == (None, "")
    # A client that rewrites the rated message cannot put its own text or sources in the database.
    forged = [history[0], {"role": "assistant", "content": f"FORGED [x](https://evil.example/a) (EVIL) {reference}"}]
    assert rate(like(1, True), forged, request) == (None, "")

    up, down, flagged, why, third = store.rows()
    assert up["liked"] and not down["liked"] and down["reason"] == "" and flagged["reason"] == "wrong"
    assert not why["liked"] and why["reason"].startswith("my name <PERSON>") and "John Smith" not in why["reason"]
    assert "<US_SSN>" in up["question"] and "glaucoma" in up["question"]
    assert up["session_id"].startswith("s-") and "browser-session" not in up["session_id"]  # an opaque token
    assert up["settings"]["max_new_tokens"] == 32 and up["model_id"] == tiny_engine.config.model
    assert third["answer"] == up["answer"] and "FORGED" not in third["answer"] and "EVIL" not in third["sources"]
    assert up["answer"] == ui.answer_of(answer)
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("feedback.sqlite3*"))
    assert not any(value in on_disk for value in PII_VALUES)
    assert rate(like(1, True), [history[0], {"role": "assistant", "content": "no reference"}], request)[0] is None
    assert len(store.rows()) == 5  # nothing stored for a message the server never issued


def test_rate_api_takes_a_reference_and_refuses_bad_input(tiny_engine, masker, tmp_path, monkeypatch):
    store, ledger = FeedbackStore(tmp_path / "feedback.sqlite3", masker), AnswerLedger()
    _, answer = answered(tiny_engine, ledger)
    reference = AnswerLedger.REFERENCE.search(answer).group(0)
    rate = ui.make_rate_fn(store, ledger)
    assert rate(reference, False, "unsafe, from jane.doe@gmial.con") == "saved"
    [row] = store.rows()
    assert "536-22-8741" not in row["question"] and row["reason"] == "unsafe, from <EMAIL>"
    assert row["sources"] == [s.source for s in tiny_engine.reply(PII_QUESTION, sampling=FAST_SAMPLING).quoted_sources]
    for bad, message in [((reference, "maybe"), "liked must be true or false"),
                         (("ref-0000000000000000", True), "reference must be"), (("'; drop", True), "reference must be"),
                         ((reference, True, "x" * 501), "at most 500 characters"), ((reference, True, 7), "reason must be text")]:
        with pytest.raises(gr.Error, match=message) as error:
            rate(*bad)
        assert "drop" not in str(error.value) and "xxxx" not in str(error.value)
    assert rate(reference, True, "a lone \ud800 surrogate") == "saved"  # stored without it, no traceback
    assert "surrogate" in store.rows()[-1]["reason"]
    broken = FeedbackStore(tmp_path / "missing" / "x.sqlite3", masker, create=False)
    assert ui.make_rate_fn(broken, ledger)(reference, True) == "not saved: the feedback store is unavailable"
    full = FeedbackStore(tmp_path / "feedback.sqlite3", masker, max_bytes=1)
    assert ui.make_rate_fn(full, ledger)(reference, True) == "not saved: the feedback store is full"


def test_ratings_are_limited_per_client(tiny_engine, masker, tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "RATINGS_PER_SESSION", RateLimit(3, 600))
    store, ledger = FeedbackStore(tmp_path / "feedback.sqlite3", masker), AnswerLedger()
    _, answer = answered(tiny_engine, ledger, "What is glaucoma?")
    reference = AnswerLedger.REFERENCE.search(answer).group(0)
    rate = ui.make_rate_fn(store, ledger)
    one = types.SimpleNamespace(session_hash="one", client=types.SimpleNamespace(host="10.0.0.1"))
    assert [rate(reference, True, "", one) for _ in range(3)] == ["saved"] * 3
    with pytest.raises(gr.Error, match="Too many ratings"):
        rate(reference, True, "", one)
    assert rate(reference, True, "", types.SimpleNamespace(session_hash="two", client=one.client)) == "saved"
    assert len(store.rows()) == 4


def test_one_answer_takes_a_few_ratings_and_a_flood_of_them_is_refused_before_masking(tiny_engine, masker, tmp_path,
                                                                                       monkeypatch):
    """Issue 23's soak: a rating flood re-rated one answer ~100 times a minute per address, each rating masked."""
    monkeypatch.setattr(ui, "RATINGS_PER_ANSWER", RateLimit(2, 3600))
    store, ledger = FeedbackStore(tmp_path / "feedback.sqlite3", masker), AnswerLedger()
    # two answers to questions the other tests rate (each answer gets a reference of its own)
    references = [AnswerLedger.REFERENCE.search(answered(tiny_engine, ledger, q)[1]).group(0)
                  for q in ("What is glaucoma?", PII_QUESTION)]
    rate = ui.make_rate_fn(store, ledger)
    masked = []
    monkeypatch.setattr(store, "record", lambda rating, record=store.record: masked.append(1) or record(rating))
    clients = [types.SimpleNamespace(session_hash=f"s{n}", client=types.SimpleNamespace(host=f"10.0.{n}.1"))
               for n in range(3)]  # new sessions and addresses do not help
    assert [rate(references[0], n % 2 == 0, "", clients[n]) for n in range(2)] == ["saved"] * 2
    from gpt2chat.serving import fairness

    fairness.PENALTIES.pop("10.0.2.1")  # nothing owed from elsewhere
    with pytest.raises(gr.Error, match="Too many ratings"):
        rate(references[0], True, "wrong", clients[2])
    assert fairness.PENALTIES.pop("10.0.2.1") == fairness.REFUSAL_COST - 1  # charged to the sender's budget
    assert len(masked) == 2 and rate(references[1], True, "", clients[2]) == "saved"  # another answer: its own


def test_one_network_rates_as_four_addresses(monkeypatch):
    monkeypatch.setattr(ui, "RATINGS_PER_ADDRESS", RateLimit(2, 600))
    monkeypatch.setattr(ui, "RATINGS_PER_NETWORK", RateLimit(8, 600))
    allowed = [ui._allowed(f"session-{n}", f"10.9.9.{n // 2}", f"ref-{n}") for n in range(12)]
    assert allowed == [True] * 8 + [False] * 4
    assert ui._allowed("session-x", "10.9.10.1", "ref-x")  # the next network is not affected


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
    textbox = page.get_by_label("Your health question")
    textbox.fill(f"I'm John Smith, SSN 536-22-8741. {record.question}")
    textbox.press("Enter")
    page.get_by_role("button", name="Send").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    follow_up = page.locator("button.option").first
    follow_up.wait_for(timeout=ANSWER_TIMEOUT_MS)  # offered once the answer is complete
    why = page.get_by_label("What was wrong with this answer? (optional)")
    assert not why.is_visible()  # asked after 👎, not before
    page.get_by_label("Dislike").last.click()

    [row] = wait_for_rows(store, 1)
    assert row["liked"] is False and "<US_SSN>" in row["question"] and record.focus.split()[0] in row["question"]
    assert row["session_id"] and row["model_id"] and row["urls"]
    on_disk = b"".join(p.read_bytes() for p in Path(store.path).parent.glob("feedback.sqlite3*"))
    assert not any(value in on_disk for value in PII_VALUES)

    # After 👎 (not before), a box asks why, over the chat's bottom edge by the rated messages, above the input.
    why.wait_for(timeout=30_000)
    chat, box, question_box = (page.locator(selector).first.bounding_box() for selector in
                               ("#gpt2chat-chat", "#gpt2chat-reason", "#gpt2chat-input"))
    assert chat["y"] <= box["y"] and box["y"] + box["height"] <= question_box["y"] + 1
    why.fill("It is about John Smith's other eye")
    page.get_by_role("button", name="Send reason").click()
    reason_row = wait_for_rows(store, 2)[1]
    assert reason_row["liked"] is False and reason_row["reason"].startswith("It is about") and "Smith" not in \
        reason_row["reason"]
    why.wait_for(state="hidden", timeout=30_000)

    page.get_by_label("Feedback").last.click()  # the flag menu of reasons
    page.locator(".extra-feedback-option", has_text="Wrong").click()
    flagged = wait_for_rows(store, 3)[2]
    time.sleep(2)  # Gradio sends a flag-menu click twice: the second must not become a row
    assert len(store.rows()) == 3 and flagged["reason"] == "wrong" and flagged["liked"] is False

    question = follow_up.inner_text().strip()
    follow_up.click()  # a follow-up is sent as the next question
    page.locator('[data-testid="user"]').filter(has_text=question).wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.close()
