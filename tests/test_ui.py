"""The Gradio app: pure functions without a server, then the served app under concurrent API clients."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpt2chat import settings
from gpt2chat.serving import ui
from gpt2chat.chat.engine import ChatReply, Source
from gpt2chat.serving.server import AppDidNotStart, served_app
from gpt2chat.serving.ui import DISCLAIMER, answer_of

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout: its app.py
MARKDOWN_LINK = re.compile(r"\[[^\]]+\]\(https?://[^)\s]+\)")
BOOT_TIMEOUT_S = 420  # TensorFlow import, model, masker, index and warm-up on 2 shared cores


# --- a served app, shared with test_deploy and test_browser --------------------------------------------------


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


@pytest.fixture(scope="module")
def live_app(tiny_run, medquad_dir, tmp_path_factory):
    """The repository's app.py serving the tiny model."""
    preset, _ = tiny_run
    log_path = tmp_path_factory.mktemp("live_app") / "app.log"
    with serve_app(REPO_ROOT, log_path, GPT2CHAT_MODEL=str(preset), GPT2CHAT_MEDQUAD=str(medquad_dir)) as url:
        yield url


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
    assert set(ui.launch_options()) == {"theme", "css"}


def _question(sample_records) -> str:
    return sample_records[0].question  # indexed in tiny_engine's retrieval sample, so it has a source


def test_chat_streams_a_growing_reply_with_sources_and_disclaimer(tiny_engine, sample_records):
    chat = ui.make_chat_fn(tiny_engine)
    outputs = list(chat(_question(sample_records), [], 0.0, 48, True, False))
    answers = [answer_of(text) for text in outputs]
    assert len(outputs) >= 2, outputs
    assert len(set(outputs)) == len(outputs)  # only changes are sent
    assert answers[0] == "…" and len(answers[-1]) > 1  # a placeholder first, then the (checked) answer
    assert MARKDOWN_LINK.search(outputs[-1]) and "**Sources:**" in outputs[-1]
    assert DISCLAIMER in outputs[-1]


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
        assert "**Sources:**" in last and DISCLAIMER in last  # answers are always checked against a cited page
    turns = [ui.Turn("What is gout?", "A kind of arthritis.")]
    assert engine.streamed == [(question, turns, False, 16), (question, turns, True, 16)]


def test_masking_note_and_show_masked_switch(tiny_engine):
    chat = ui.make_chat_fn(tiny_engine)
    message = "My email is jane.doe@example.com, what helps with gout?"
    hidden = list(chat(message, [], 0.0, 8, True, False))[-1]
    shown = list(chat(message, [], 0.0, 8, True, True))[-1]
    assert "Personal details were removed" in hidden and "EMAIL" in hidden.upper()
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
    assert MARKDOWN_LINK.search(grounded) and DISCLAIMER in grounded and "…" not in answer_of(grounded)
    assert "**Sources:**" in ask(_question(sample_records), 0.0, 8, False)


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
    from gradio_client import Client

    question = _question(sample_records)

    def one_user(number: int) -> str:
        client = Client(live_app, verbose=False)
        return client.submit(f"{question} ({number})", 0.7, 16, True, api_name="/ask").result(timeout=240)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(one_user, range(12), timeout=300))
    assert len(answers) == 12 and all(DISCLAIMER in a for a in answers), answers
    print(f"12 concurrent /ask requests answered in {time.perf_counter() - started:.1f} s")


def test_no_answer_links_the_medlineplus_search_instead_of_a_source():
    url = "https://medlineplus.gov/search/?query=metformin+dose"
    rendered = ui.render_reply(ChatReply(answer="No NIH answer.", category="no_answer", search_url=url, finished=True))
    assert f"]({url})" in rendered and "**Sources:**" not in rendered
