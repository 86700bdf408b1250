"""The Gradio app: pure functions without a server, then the served app under concurrent API clients."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpt2chat import settings
from gpt2chat.serving import ui
from gpt2chat.chat.engine import ChatReply, Source
from gpt2chat.chat.kinds import AnswerKind, Category
from gpt2chat.serving.server import AppDidNotStart, served_app
from gpt2chat.serving.ui import REPLY_DISCLAIMER, answer_of

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout: its app.py
MARKDOWN_LINK = re.compile(r"\[[^\]]+\]\(https?://[^)\s]+\)")
SOURCES_LINE = re.compile(r"^\*\*Sources?:\*\* \[[^\]]+ — [^\]]+\]\(https?://", re.M)
BOOT_TIMEOUT_S = 420  # TensorFlow import, model, masker, index and warm-up on 2 shared cores


# --- a served app (conftest's live_app serves this repository's to test_browser and this module) -------------


@contextlib.contextmanager
def serve_app(app_dir: Path, log_path: Path, **env):
    """``gpt2chat.serving.server.served_app`` with the repository's retrieval cache (already built for this
    MedQuAD tree); yields the URL."""
    try:
        with served_app(app_dir, log_path, env={settings.CACHE_ENV: str(settings.cache_dir()), **env},
                        boot_timeout_s=BOOT_TIMEOUT_S) as running:
            yield running.url
    except AppDidNotStart as error:
        pytest.fail(str(error))


# --- pure functions --------------------------------------------------------------------------------------------


def test_history_turns_reads_gradio_messages():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "What is gout?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Gout is arthritis."}], "metadata": None},
        {"role": "user", "content": "How is it treated?"},  # plain strings too (older clients)
        {"role": "assistant", "content": "Rest and medicines."},
    ]
    assert ui.history_turns(history) == [ui.Turn("What is gout?", "Gout is arthritis."),
                                         ui.Turn("How is it treated?", "Rest and medicines.")]


def test_history_turns_keep_the_answer_without_its_sources():
    rendered = ui.render_reply(ChatReply(answer="Gout is arthritis.", sources=[Source("Gout", "https://x.gov", "NIH")],
                                         finished=True))
    history = [{"role": "user", "content": "What is gout?"}, {"role": "assistant", "content": rendered}]
    assert ui.history_turns(history) == [ui.Turn("What is gout?", "Gout is arthritis.")]


def test_history_turns_join_split_turns_and_drop_unanswered_ones():
    file_part = {"type": "file", "file": {"path": "/tmp/x.png"}}
    history = [
        {"role": "assistant", "content": "Welcome!"},  # nothing asked yet
        {"role": "user", "content": [file_part, {"type": "text", "text": "What is this rash?"}]},
        {"role": "assistant", "content": "It may be eczema."},
        {"role": "assistant", "content": "See a doctor."},
        {"role": "user", "content": "stopped before any answer"},
        {"role": "user", "content": "What is asthma?"},
        {"role": "assistant", "content": "A lung disease."},
        {"role": "user", "content": "and the last one, being answered now"},
    ]
    assert ui.history_turns(history) == [
        ui.Turn("What is this rash?", "It may be eczema.\n\nSee a doctor."),
        ui.Turn("stopped before any answer\nWhat is asthma?", "A lung disease."),
    ]
    assert ui.history_turns([]) == ui.history_turns(None) == []


def test_sampling_config_accepts_what_the_sliders_send():
    assert ui.sampling_config(0.3, 100.0).max_new_tokens == 100
    assert ui.sampling_config("0.7", "64") == ui.SamplingConfig(max_new_tokens=64, temperature=0.7)
    assert ui.sampling_config(0, ui.MAX_NEW_TOKENS).temperature == 0.0


SECRET = "I am Ann Lee, SSN 536-22-8741"


@pytest.mark.parametrize("temperature, max_new_tokens", [
    (float("inf"), 64), (float("nan"), 64), (-1, 64), (2.0, 64), (0.7, 0), (0.7, -5), (0.7, 10_000),
    (SECRET, 64), (0.7, SECRET), (None, 64), (True, 64), ([0.7], 64),
])
def test_out_of_range_api_values_are_refused_without_echoing_them(temperature, max_new_tokens):
    with pytest.raises(ui.gr.Error) as error:
        ui.sampling_config(temperature, max_new_tokens)
    assert "must be a number between" in str(error.value) and "Ann Lee" not in str(error.value)


def test_misplaced_arguments_give_a_clear_error_without_the_value(tiny_engine, caplog):
    ask = ui.make_ask_fn(tiny_engine)
    with caplog.at_level(logging.DEBUG), pytest.raises(ui.gr.Error) as error:
        ask("What is asthma?", SECRET, 64, True)
    assert "temperature" in str(error.value) and "536-22" not in str(error.value) and "536-22" not in caplog.text
    for grounded in (SECRET, 3):
        with pytest.raises(ui.gr.Error, match="grounded must be true or false"):
            ask("What is asthma?", 0.7, 64, grounded)
    with pytest.raises(ui.gr.Error, match="message must be text"):
        ask(None, 0.7, 64, True)


def test_user_text_is_never_rendered_as_markdown():
    hostile = "![pixel](https://tracker.example/p.png) [click](https://evil.example) <img src=x> **bold** `x`"
    reply = ChatReply(answer="An answer.", masked_types=["PERSON"], masked_message=hostile, finished=True)
    rendered = ui.render_reply(reply, show_masked=True)
    span = re.search(r"The model saw: `([^`]*)`", rendered)
    assert span and "![pixel](https://tracker.example/p.png)" in span.group(1)  # shown as typed, inside code
    outside = rendered.replace(span.group(0), "")
    assert "tracker.example" not in outside and "<img" not in outside


def test_theme_uses_local_fonts_only():
    theme = ui.medical_theme()
    fonts = [f for f in ui.FONT_STACK + ui.MONO_STACK if not isinstance(f, str)]
    assert fonts and not any(isinstance(f, ui.gr.themes.GoogleFont) for f in fonts)
    assert all(sheet.get("url") is None for sheet in theme._stylesheets if isinstance(sheet, dict))
    assert "googleapis" not in theme._get_theme_css()
    assert set(ui.launch_options()) == {"theme", "css", "js", "head"}


def _question(sample_records) -> str:
    return sample_records[0].question  # indexed in tiny_engine's retrieval sample, so it has a source


def test_chat_streams_a_growing_reply_with_sources_and_disclaimer(tiny_engine, sample_records):
    chat = ui.make_chat_fn(tiny_engine)
    outputs = list(chat(_question(sample_records), [], 0.0, 48, True, False))
    answers = [answer_of(text) for text in outputs]
    assert len(outputs) >= 2, outputs
    assert len(set(outputs)) == len(outputs)  # only changes are sent
    assert answers[0] == "…" and len(answers[-1]) > 1  # a placeholder first, then the (checked) answer
    assert MARKDOWN_LINK.search(outputs[-1]) and SOURCES_LINE.search(outputs[-1])
    assert REPLY_DISCLAIMER in outputs[-1]


class RecordingEngine:
    """The engine, with what the UI asks of it recorded."""

    def __init__(self, engine):
        self.engine = engine
        self.streamed = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, message, history, *, grounded, sampling):
        self.streamed.append((message, history, grounded, sampling.max_new_tokens))
        return self.engine.stream(message, history, grounded=grounded, sampling=sampling)


def test_chat_passes_history_and_grounding_switch(tiny_engine, sample_records):
    engine = RecordingEngine(tiny_engine)
    chat = ui.make_chat_fn(engine)
    history = [{"role": "user", "content": "What is gout?"}, {"role": "assistant", "content": "A kind of arthritis."}]
    question = _question(sample_records)
    for grounded in (False, True):
        last = list(chat(question, history, 0.0, 16, grounded, False))[-1]
        assert SOURCES_LINE.search(last) and REPLY_DISCLAIMER in last  # answers are always checked against a cited page
    turns = [ui.Turn("What is gout?", "A kind of arthritis.")]
    assert engine.streamed == [(question, turns, False, 16), (question, turns, True, 16)]


def test_masking_note_and_show_masked_switch(tiny_engine):
    chat = ui.make_chat_fn(tiny_engine)
    message = "My email is jane.doe@example.com, what helps with gout?"
    hidden = list(chat(message, [], 0.0, 8, True, False))[-1]
    shown = list(chat(message, [], 0.0, 8, True, True))[-1]
    assert "Removed from your message before it was answered: your e-mail address." in hidden
    assert "jane.doe@example.com" not in hidden + shown
    assert "The model saw" in shown and "The model saw" not in hidden


def test_raw_messages_are_never_logged(tiny_engine, caplog):
    secret = "Zorblax Quuxington lives at 42 Wallaby Way"
    with caplog.at_level(logging.DEBUG):
        list(ui.make_chat_fn(tiny_engine)(f"{secret}: what is asthma?", [], 0.0, 8, True, False))
        ui.make_ask_fn(tiny_engine)(f"{secret}: what is asthma?", 0.0, 8, True)
    assert caplog.records, "the reply statistics are logged"
    assert not any("Zorblax" in record.getMessage() for record in caplog.records)


def test_ask_returns_the_final_markdown(tiny_engine, sample_records):
    ask = ui.make_ask_fn(tiny_engine)
    grounded = ask(_question(sample_records), 0.0, 24, True)
    assert MARKDOWN_LINK.search(grounded) and REPLY_DISCLAIMER in grounded and "…" not in answer_of(grounded)
    assert SOURCES_LINE.search(ask(_question(sample_records), 0.0, 8, False))


def test_build_app_exposes_chat_and_ask_endpoints(tiny_engine):
    demo = ui.build_app(tiny_engine)
    endpoints = demo.get_api_info()["named_endpoints"]
    assert {"/ask", "/chat"} <= set(endpoints)
    assert [p["parameter_name"] for p in endpoints["/ask"]["parameters"]] == [
        "message", "temperature", "max_new_tokens", "grounded"]
    assert [r["python_type"]["type"] for r in endpoints["/ask"]["returns"]] == ["str"]
    assert "Answer one medical question" in endpoints["/ask"]["description"]


# --- the served app ---------------------------------------------------------------------------------------------


def test_api_view_documents_ask(live_app, capsys):
    from gradio_client import Client

    Client(live_app, verbose=False).view_api(print_info=True)
    assert 'api_name="/ask"' in capsys.readouterr().out


def test_concurrent_clients_all_get_answers(live_app, sample_records):
    """Twelve people asking at once, each from an address of their own (the app shares its answer slots out per
    client address, and refuses a client's questions beyond a few at once)."""
    from tests.test_soak import soak

    question = _question(sample_records)

    def one_user(number: int) -> str:
        with soak.http_client(soak.client_address("user", number)) as http:
            event, data = soak.call_api(http, live_app, "ask", [f"{question} ({number})", 0.7, 16, True])
        return data[0] if event == "complete" else f"{event}: {data}"

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(one_user, range(12), timeout=300))
    assert len(answers) == 12 and all(REPLY_DISCLAIMER in a for a in answers), answers
    print(f"12 concurrent /ask requests answered in {time.perf_counter() - started:.1f} s")


def test_no_answer_links_the_medlineplus_search_instead_of_a_source():
    url = "https://medlineplus.gov/search/?query=metformin+dose"
    rendered = ui.render_reply(ChatReply(answer="No NIH answer.", category="no_answer", search_url=url, finished=True))
    assert f"]({url})" in rendered and not SOURCES_LINE.search(rendered)


# --- one reply as users read it ------------------------------------------------------------------------------------

DIABETES = ("Many people have no signs of diabetes. Symptoms include - increased thirst - increased hunger - sores "
            "that do not heal. Many people do not find out they have the disease until they have problems.")
GOUT = "Gout is a common, painful form of arthritis. It causes swollen, red, hot and stiff joints."


def _sources(*quoted: int):
    """Three retrieved pages, those at the positions ``quoted`` marked as the answer's (as the engine marks them)."""
    sources = [ui.Source("Type 2 Diabetes", "https://medlineplus.gov/diabetes.html", "MPlusHealthTopics", DIABETES),
               ui.Source("Gout", "https://medlineplus.gov/genetics/condition/gout/", "GHR", GOUT),
               ui.Source("Gout", "https://web.archive.org/web/2017/http://nihseniorhealth.gov/gout/toc.html",
                         "NIHSeniorHealth", GOUT)]
    return [dataclasses.replace(s, quoted=i in quoted) for i, s in enumerate(sources)]


def test_a_reply_cites_only_the_pages_it_quotes_and_folds_their_text():
    reply = ChatReply(answer="Symptoms include - increased thirst - increased hunger - sores that do not heal.",
                      answer_kind=AnswerKind.EXTRACT, sources=_sources(0), evidence=DIABETES, finished=True)
    rendered = ui.render_reply(reply)
    head, tail = rendered.split(ui.SECTION_BREAK)
    assert head == ("**Summary of the NIH page:** Symptoms include\n\n- increased thirst\n- increased hunger\n"
                    "- sores that do not heal.")
    assert "**Source:** [Type 2 Diabetes — MedlinePlus](https://medlineplus.gov/diabetes.html)" in tail
    assert ("**Related pages:** [Gout — MedlinePlus Genetics](https://medlineplus.gov/genetics/condition/gout/) · "
            "[Gout — NIHSeniorHealth (archived)](https://web.archive.org/") in tail
    folded = re.search(r"<details><summary>Show the NIH text</summary>\n\n(.*?)\n\n</details>", tail, re.S).group(1)
    assert folded == ("Many people have no signs of diabetes. <mark>Symptoms include</mark>\n\n"
                      "- <mark>increased thirst</mark>\n- <mark>increased hunger</mark>\n"
                      "- <mark>sores that do not heal.</mark>\n\n"
                      "Many people do not find out they have the disease until they have problems.")
    assert tail.endswith(f"_{REPLY_DISCLAIMER}_") and ui.DISCLAIMER not in rendered


def test_an_answer_quoting_two_pages_cites_both_and_same_titles_read_differently():
    sources = _sources(1)[1:]
    reply = ChatReply(answer="Gout is a common, painful form of arthritis.", answer_kind=AnswerKind.MODEL,
                      sources=[sources[0], ui.Source("Gout", "https://x.nih.gov/g", "GHR",
                                                     GOUT + " Attacks often start at night.", quoted=True)],
                      finished=True)
    rendered = ui.render_reply(reply)
    assert ("**Sources:** [Gout — MedlinePlus Genetics](https://medlineplus.gov/genetics/condition/gout/) · "
            "[Gout — MedlinePlus Genetics, page 2](https://x.nih.gov/g)") in rendered
    assert rendered.count("<details>") == 2 and "Show the NIH text (Gout — MedlinePlus Genetics)" in rendered
    # NIH sites copy each other's text: what the first page's text showed is not shown again for the second.
    second = rendered.split("<details>")[2]
    assert "Attacks often start at night." in second and "arthritis" not in second


def test_the_reply_lists_the_pages_the_engine_marked_quoted_not_those_whose_text_matches():
    """Both Gout pages hold the answer's sentence; the engine drew it from the second: only that one is the source."""
    reply = ChatReply(answer="Gout is a common, painful form of arthritis.", answer_kind=AnswerKind.EXTRACT,
                      sources=_sources(2)[1:], finished=True)
    rendered = ui.render_reply(reply)
    assert "**Source:** [Gout — NIHSeniorHealth (archived)](https://web.archive.org/" in rendered
    assert ("**Related pages:** [Gout — MedlinePlus Genetics](https://medlineplus.gov/genetics/condition/gout/)"
            in rendered)


def test_a_quote_from_a_section_retrieval_did_not_cite_is_shown_under_its_page():
    """The engine's extract of the gout page's treatment section (retrieval cited the arthritis page first and the
    gout page's opening section): the gout page is the source, its fold shows that section with the quote marked."""
    from tests.test_engine import ARTHRITIS, GOUT_PAGE, TREATED, _page_engine

    reply = _page_engine("page").answer_from_pages("How is gout treated?", [[ARTHRITIS], GOUT_PAGE], None,
                                                    cited=[ARTHRITIS, GOUT_PAGE[0]])
    rendered = ui.render_reply(reply)
    assert "**Source:** [Gout — NIHSeniorHealth (archived)](https://web.archive.org/" in rendered
    assert "**Related pages:** [Arthritis — MedlinePlus](https://medlineplus.gov/arthritis.html)" in rendered
    folded = re.search(r"<details><summary>Show the NIH text</summary>\n\n(.*?)\n\n</details>", rendered, re.S)
    assert f"<mark>{TREATED}</mark>" in folded.group(1) and "Arthritis means" not in folded.group(1)


def test_no_sentence_appears_twice_in_what_a_reply_shows():
    reply = ChatReply(answer=GOUT, answer_kind=AnswerKind.EXTRACT, sources=_sources(1)[1:2], evidence=GOUT,
                      finished=True)
    visible = re.sub(r"<details>.*?</details>", "", ui.render_reply(reply), flags=re.S)
    assert visible.count("Gout is a common, painful form of arthritis.") == 1


def test_emergency_replies_are_an_urgent_callout_with_tap_to_call_numbers():
    notice = ("Please call your local emergency number now (911 in the US, 112 in Europe).\n\n"
              "Poison Control: 1-800-222-1222.")
    rendered = ui.render_reply(ChatReply(category="emergency", notice=notice, masked_types=["PERSON"], finished=True))
    privacy, callout = rendered.split("\n\n", 1)
    assert privacy == "🔒 Removed from your message before it was answered: your name."
    assert callout.startswith('<div class="gpt2chat-urgent" role="alert">')
    assert ('<a href="tel:911">911</a>' in callout and '<a href="tel:112">112</a>' in callout
            and '<a href="tel:18002221222">1-800-222-1222</a>' in callout)
    assert ui.answer_of(rendered).startswith("⚠️ This may be an emergency.")


def test_what_was_removed_is_named_in_plain_words():
    assert ui.removed_in_plain_words(["EMAIL", "PERSON", "DATE_OF_BIRTH"]) == \
        "your name, date of birth and e-mail address"
    assert ui.removed_in_plain_words(["PHONE"]) == "your phone number"
    reply = ChatReply(answer="Gout is arthritis.", masked_types=["EMAIL", "PERSON", "DATE_OF_BIRTH"], finished=True)
    rendered = ui.render_reply(reply)
    assert rendered.startswith("🔒 Removed from your message before it was answered: your name, date of birth and "
                               "e-mail address.\n\nGout is arthritis.")
    assert ui.answer_of(rendered) == "Gout is arthritis."  # the note is not part of the conversation's history


def test_corpus_text_cannot_inject_markup_and_a_single_dash_stays_prose():
    reply = ChatReply(answer="Use <b>care</b> [here](https://evil.example) - always.", answer_kind=AnswerKind.MODEL,
                      finished=True)
    head = ui.render_reply(reply).split(ui.SECTION_BREAK)[0]
    assert "<b>" not in head and not re.search(r"(?<!\\)\]\(", head)  # shown as typed: no tag, no link
    assert "- always" in head and "\n- " not in head


def test_follow_ups_built_on_booklet_titles_are_not_offered():
    assert not ui.readable_followup("What is I Can Lower My Risk for Type 2 Diabetes: A Guide for American Indians?")
    assert ui.readable_followup("How is gout treated?")


# --- pages of sites that moved or retired --------------------------------------------------------------------------

def test_moved_and_retired_nih_pages_are_cited_where_they_are_now(sample_records):
    from gpt2chat.corpus.sites import archived_page, current_url, is_archived

    assert current_url("https://ghr.nlm.nih.gov/condition/aarskog-scott-syndrome") == \
        "https://medlineplus.gov/genetics/condition/aarskog-scott-syndrome/"
    assert current_url("https://www.nlm.nih.gov/medlineplus/a1c.html") == "https://medlineplus.gov/a1c.html"
    assert current_url("https://rarediseases.info.nih.gov/gard/335/abcd-syndrome") == \
        "https://rarediseases.info.nih.gov/diseases/335/abcd-syndrome"
    senior = "http://nihseniorhealth.gov/glaucoma/toc.html"
    assert current_url(senior) == "https://web.archive.org/web/2017/" + senior and is_archived(current_url(senior))
    assert archived_page(current_url(senior)) == senior
    cdc = "http://www.cdc.gov/parasites/acanthamoeba/"
    assert current_url(cdc) == cdc and not is_archived(cdc)
    # Every rule of the map rewrites real MedQuAD URLs (the tests' sample has files of every site).
    moved = {r.source for r in sample_records if current_url(r.url) != r.url}
    assert moved == {"GHR", "MPlusHealthTopics", "GARD", "NIHSeniorHealth"}, moved


def test_app_serves_nih_summaries_without_a_model_on_request(capsys):
    import app

    assert app.parse_args(["--no-model"], env={}).no_model and not app.parse_args([], env={}).no_model
    with pytest.raises(SystemExit):
        app.parse_args(["--no-model", "--model", "models/x"], env={})
    assert "exclude each other" in capsys.readouterr().err


    

def test_hostile_requests_echo_no_value_and_leave_none_in_the_log(live_app, tmp_path_factory):
    """Issue 23's probe, one request of each kind (benchmarks/soak.py's ATTACKS), the server log read after each:
    Gradio's own input checks used to echo the value to the client and into the log with a traceback."""
    import httpx

    from tests.test_soak import soak

    config_json = httpx.get(f"{live_app}/config", timeout=60).json()
    log_path = next(tmp_path_factory.getbasetemp().glob("live_app*/app.log"))
    replies = {}
    for number, kind in enumerate(soak.ATTACKS):  # each from an address of its own: what each gets, not the budget
        replies[kind] = soak.attack(kind, live_app, None, config_json, soak.client_address("attacker", number))
        assert soak.SECRET not in replies[kind], kind
        log = log_path.read_text(errors="replace")
        assert soak.SECRET not in log and "Traceback" not in log, kind
        assert max(map(len, log.splitlines())) <= 600, kind
    assert replies["upload"].startswith("status 403")
    assert replies["big_rating"] == "status 413"  # refused before it is parsed
    assert replies["malformed_history"].startswith("status 422")  # refused before Gradio validates it (HistoryGate)
    for path in ("/gradio_api/call/chat", "/gradio_api/queue/join"):  # FastAPI's own shape check echoed values
        with soak.http_client(soak.client_address("attacker", 40)) as http:
            reply = http.post(live_app + path, json={"data": f"my ssn {soak.SECRET}", "fn_index": soak.SECRET})
        assert reply.status_code == 422 and soak.SECRET not in reply.text, path
    assert "reference must be" in replies["rating_flood"]


def test_follow_ups_are_about_the_page_the_answer_quotes():
    """Retrieval ranked the diabetes page first, the answer quotes the gout page: the follow-ups ask about gout."""
    reply = ChatReply(answer=GOUT, answer_kind=AnswerKind.EXTRACT, sources=_sources(1), finished=True)
    focuses = []

    class Engine:
        def stream(self, message, turns, **options):
            yield reply

    class Followups:
        def suggest_for_focus(self, focus, asked="", exclude=()):
            focuses.append(focus)
            return [f"How is {focus} treated?"]

    *_, final = ui.make_chat_fn(Engine(), Followups())("What is gout?", [], 0.0, 16, True, False)
    assert focuses == ["Gout"] and [option["value"] for option in final.options] == ["How is Gout treated?"]
