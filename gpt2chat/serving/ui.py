"""The Gradio app: a streaming chat UI and an ``/ask`` API endpoint over one ``ChatEngine``.

    from gpt2chat.serving.ui import build_app, launch_options
    build_app(engine).queue(default_concurrency_limit=2, max_size=64).launch(**launch_options())

Everything below ``build_app`` is a small function that tests call without a browser. The engine returns
structured replies; this module renders them as Markdown (``render_reply``) and reads the answer back out of
Gradio's history (``history_turns``). Text that comes from the user is escaped, never rendered as Markdown, so
a message cannot put links or images into a reply. Every API argument is checked with a message that never
echoes its value. Gradio 6 takes the theme and CSS in ``launch()``, hence ``launch_options``. Raw user messages
are never logged: only reply statistics. With a ``FeedbackStore``, every answer gets 👍/👎 (and reasons under the
flag) and ``/rate`` takes ratings over the API, both by the answer reference each final reply carries: the
rating is made from the server's copy of what it showed (``AnswerLedger``), never from client text, and the
store masks it. Each final answer offers follow-up
questions on the same focus as clickable options (``gpt2chat.chat.followups``).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import typing
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from gpt2chat.chat.engine import EXTRACT_ANSWER, EXTRACT_NOTICE, ChatEngine, ChatReply, Turn
from gpt2chat.serving.feedback import NOTICE as FEEDBACK_NOTICE
from gpt2chat.serving.feedback import (LIMITS, REASONS, AnswerLedger, FeedbackStore, IssuedAnswer, RateLimit, Rating,
                                       session_token)
from gpt2chat.chat.followups import FollowupFinder
from gpt2chat.modeling.generation import SamplingConfig

log = logging.getLogger(__name__)

TITLE = "gpt2chat · medical questions"
DESCRIPTION = (
    "A small GPT-2 trained on [MedQuAD](https://github.com/abachaa/MedQuAD), question-answer pairs from 12 NIH "
    "websites. Answers are grounded in the closest NIH passage and link to it. Personal details (names, phone "
    "numbers, e-mail addresses…) are removed before the model sees your message."
)
EXAMPLES = (
    "What is glaucoma?",
    "How is high blood pressure treated?",
    "What are the symptoms of Lyme disease?",
    "Is Parkinson's disease inherited?",
    "What causes type 2 diabetes?",
)
MAX_NEW_TOKENS = 320  # the API enforces this too: longer answers only ramble on a model this small
MAX_TEMPERATURE = 1.5
DEFAULT_SAMPLING = SamplingConfig()
DISCLAIMER = (
    "General information from NIH sources, not medical advice. It may be incomplete or wrong; "
    "ask a doctor or pharmacist about your own situation. In an emergency, call your local emergency number."
)
# A rendered reply puts the answer before this line, so history can recover the answer alone.
SECTION_BREAK = "\n\n---\n"

# A calm teal / clinical blue palette; neutral greys lean blue so the page never looks harsh.
TEAL = gr.themes.Color(
    c50="#effcfa", c100="#d2f4ef", c200="#a7e8df", c300="#72d5ca", c400="#3fbab0", c500="#249e96",
    c600="#1b7f7a", c700="#1a6663", c800="#195250", c900="#184443", c950="#082828", name="gpt2chat_teal",
)
CLINICAL_BLUE = gr.themes.Color(
    c50="#eff6ff", c100="#dbeafe", c200="#bcd7f5", c300="#8fbbeb", c400="#5c98dc", c500="#3a7bc8",
    c600="#2b62a8", c700="#254f88", c800="#234470", c900="#213a5d", c950="#15243d", name="gpt2chat_blue",
)
# Only fonts the visitor already has: no web-font download (the Space and the tests run offline-friendly).
FONT_STACK = (gr.themes.Font("system-ui"), gr.themes.Font("-apple-system"), gr.themes.Font("Segoe UI"),
              gr.themes.Font("Roboto"), gr.themes.Font("Helvetica Neue"), "sans-serif")
MONO_STACK = (gr.themes.Font("ui-monospace"), gr.themes.Font("SFMono-Regular"), gr.themes.Font("Consolas"),
              "monospace")

CSS = """
.gradio-container { max-width: 920px !important; margin: 0 auto !important; }
#gpt2chat-header h1 { color: var(--primary-700); margin-bottom: 0.25rem; }
#gpt2chat-header p { color: var(--body-text-color-subdued); }
#gpt2chat-disclaimer {
  border-left: 4px solid var(--primary-500); background: var(--primary-50);
  border-radius: var(--radius-lg); padding: 0.6rem 1rem;
}
.dark #gpt2chat-disclaimer { background: var(--primary-950); }
#gpt2chat-disclaimer p { margin: 0; font-size: var(--text-sm); }
.message-wrap a { color: var(--secondary-600); text-decoration: underline; }
.message-wrap hr { margin: 0.75rem 0; opacity: 0.4; }
"""


def medical_theme() -> gr.themes.Base:
    return gr.themes.Base(
        primary_hue=TEAL,
        secondary_hue=CLINICAL_BLUE,
        neutral_hue=gr.themes.colors.slate,
        radius_size=gr.themes.sizes.radius_lg,
        font=FONT_STACK,
        font_mono=MONO_STACK,
    ).set(
        body_background_fill="linear-gradient(180deg, *primary_50 0%, *neutral_50 320px)",
        body_background_fill_dark="*neutral_950",
        block_radius="*radius_lg",
        block_border_width="1px",
        block_shadow="0 1px 3px rgba(15, 60, 70, 0.08)",
        input_radius="*radius_lg",
        button_large_radius="*radius_lg",
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        button_primary_text_color="white",
        color_accent_soft="*primary_100",
        link_text_color="*secondary_600",
    )


def launch_options() -> dict[str, Any]:
    """The ``launch()`` keyword arguments that style the app (Gradio 6 moved theme and CSS there)."""
    return {"theme": medical_theme(), "css": CSS}


def _text(content: Any) -> str:
    """The text of one message's content: a string, a text part, or a list of parts (Gradio 6 normalises
    history to lists of ``{"type": "text", "text": ...}``); files and components count as no text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "\n".join(part for part in map(_text, content) if part)
    return ""


def literal(text: str) -> str:
    """User-derived text as a Markdown code span: shown as typed, so no link, autolinked URL, image, HTML or
    emphasis can come out of it. Backticks, which would end the span, become a look-alike."""
    return "`" + " ".join(text.replace("`", "ˋ").split()) + "`"


def render_reply(reply: ChatReply, show_masked: bool = False) -> str:
    """The reply as one Markdown message: notice, answer, then the NIH passage, sources, masking note and
    disclaimer after ``SECTION_BREAK``."""
    answer = reply.answer or ("…" if not reply.finished else "")
    if reply.answer_kind == EXTRACT_ANSWER and answer:
        answer = f"**{EXTRACT_NOTICE}:** {answer}"
    head = "\n\n".join(part for part in (reply.notice, answer) if part)
    if reply.category in ("emergency", "invalid"):
        return head
    tail = []
    if reply.evidence and reply.sources:
        tail.append(f"> **From {reply.sources[0].title} ({reply.sources[0].source}):** {reply.evidence}")
    if reply.sources:
        links = "; ".join(f"[{s.title}]({s.url}) ({s.source})" for s in reply.sources)
        tail.append(f"**Sources:** {links}")
    elif reply.search_url:
        tail.append(f"**Search MedlinePlus instead:** [medlineplus.gov search]({reply.search_url})")
    if reply.masked_types:
        note = f"🔒 Personal details were removed before processing: {', '.join(reply.masked_types)}."
        if show_masked and reply.masked_message:
            note += f"\n\nThe model saw: {literal(reply.masked_message)}"
        tail.append(note)
    tail.append(f"_{DISCLAIMER}_")
    return head + SECTION_BREAK + "\n\n".join(tail)


def answer_of(rendered: str) -> str:
    """The answer part of a rendered reply (Gradio's history holds rendered replies)."""
    return rendered.split(SECTION_BREAK, 1)[0]


def history_turns(history: Sequence[dict] | None) -> list[Turn]:
    """Gradio's messages history → the engine's turns (the user's message and the answer alone). Consecutive
    messages of one role are joined; a user turn that got no answer (stopped, failed) is dropped."""
    turns: list[Turn] = []
    user: str | None = None
    assistant: list[str] = []
    for message in history or ():
        role, text = message.get("role"), _text(message.get("content"))
        if role == "user":
            if user is not None and assistant:
                turns.append(Turn(user, "\n\n".join(assistant)))
                user, assistant = None, []
            user = text if user is None or assistant else f"{user}\n{text}"
        elif role == "assistant" and user is not None and text:
            assistant.append(answer_of(text))
    if user is not None and assistant:
        turns.append(Turn(user, "\n\n".join(assistant)))
    return turns


def _number(value: Any, name: str, low: float, high: float) -> float:
    """An API argument as a finite number within [low, high]; the error names the argument, never its value."""
    if isinstance(value, bool):
        raise gr.Error(f"{name} must be a number between {low:g} and {high:g}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or not low <= number <= high:
        raise gr.Error(f"{name} must be a number between {low:g} and {high:g}")
    return number


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise gr.Error(f"{name} must be true or false")


def _message(value: Any) -> str:
    if not isinstance(value, str):
        raise gr.Error("message must be text")
    return value


def sampling_config(temperature: Any, max_new_tokens: Any) -> SamplingConfig:
    """Slider or API values → sampling settings; out-of-range or non-numeric values are refused."""
    return SamplingConfig(
        max_new_tokens=int(_number(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)),
        temperature=_number(temperature, "temperature", 0.0, MAX_TEMPERATURE),
    )


def _log_reply(reply) -> None:
    stats = reply.stats
    if stats and stats.new_tokens:
        log.info("reply %s (%s): %d prompt + %d new tokens, first after %.2f s, %.1f tokens/s", reply.category,
                 reply.answer_kind, stats.prompt_tokens, stats.new_tokens, stats.seconds_to_first_token,
                 stats.tokens_per_second)
    else:
        log.info("reply %s (%s): no generation", reply.category, reply.answer_kind)


RATEABLE = ("answer", "boundary", "no_answer")


def with_reference(rendered: str, reply: ChatReply, question: str, engine: ChatEngine,
                   ledger: AnswerLedger | None, settings: dict) -> str:
    """The final rendered reply with the reference ratings send back (the server keeps what it showed)."""
    if ledger is None or not reply.finished or reply.category not in RATEABLE:
        return rendered
    reference = ledger.issue(IssuedAnswer(
        question=reply.masked_message or question, answer=answer_of(rendered), shown=reply.answer_kind,
        urls=tuple(s.url for s in reply.sources), sources=tuple(s.source for s in reply.sources),
        model_id=_model_id(engine), settings=settings))
    return f"{rendered}\n\n<sub>Answer reference: {reference}</sub>"


def make_chat_fn(engine: ChatEngine, followups: FollowupFinder | None = None, ledger: AnswerLedger | None = None):
    """The ChatInterface function: a generator yielding the growing Markdown reply, token by token; with
    ``followups``, the finished reply comes last as a message whose options are follow-up questions; with
    ``ledger``, the finished reply carries an answer reference for ratings."""

    def chat(message: str, history: list[dict], temperature: float, max_new_tokens: float, grounded: bool,
             show_masked: bool) -> Iterator[str]:
        """Answer one chat message, streaming the Markdown reply (answer, sources, disclaimer)."""
        shown, reply = None, None
        sampling = sampling_config(temperature, max_new_tokens)
        show_masked, grounded = _flag(show_masked, "show_masked"), _flag(grounded, "grounded")
        turns = history_turns(history)
        for reply in engine.stream(_message(message), turns, grounded=grounded, sampling=sampling):
            text = render_reply(reply, show_masked)
            if text != shown:  # a token that does not change the cleaned answer is not worth a round trip
                shown = text
                yield text
        if reply is not None:
            _log_reply(reply)
            referenced = with_reference(shown, reply, message, engine, ledger, {
                "temperature": sampling.temperature, "max_new_tokens": sampling.max_new_tokens, "grounded": grounded})
            if referenced != shown:
                shown = referenced
                yield shown
        answered = reply is not None and reply.sources and reply.category in ("answer", "boundary")
        if followups is not None and answered:
            asked = [turn.question for turn in turns]  # never offer what was already asked
            suggestions = followups.suggest_for_focus(reply.sources[0].title, asked=message, exclude=asked)
            if suggestions:  # clicking an option sends it as the next message (ChatInterface.option_clicked)
                yield gr.ChatMessage(content=shown, options=[{"value": q} for q in suggestions])

    return chat


def make_ask_fn(engine: ChatEngine, ledger: AnswerLedger | None = None):
    """The ``/ask`` API function: one question in, the final Markdown answer out (with ``ledger``, ending with the
    answer reference that ``/rate`` takes)."""

    def ask(message: str, temperature: float = DEFAULT_SAMPLING.temperature,
            max_new_tokens: int = DEFAULT_SAMPLING.max_new_tokens, grounded: bool = True) -> str:
        """Answer one medical question (no conversation history). Returns Markdown: the answer, links to the
        NIH source pages, a note when personal details were removed, and the disclaimer. temperature (0 to 1.5)
        0 is greedy decoding; max_new_tokens is 1 to 320; grounded=False leaves the passage out of the model's
        prompt (the answer is still checked against it)."""
        sampling = sampling_config(temperature, max_new_tokens)
        grounded = _flag(grounded, "grounded")
        reply = engine.reply(_message(message), grounded=grounded, sampling=sampling)
        _log_reply(reply)
        return with_reference(render_reply(reply), reply, message, engine, ledger, {
            "temperature": sampling.temperature, "max_new_tokens": sampling.max_new_tokens, "grounded": grounded,
            "via": "api"})

    # gr.api reads the return annotation unresolved: a postponed "str" would be documented as Any.
    ask.__annotations__ = typing.get_type_hints(ask)
    return ask


# --- ratings and follow-ups -----------------------------------------------------------------------------------

# Thumbs up/down, then the reasons under Gradio's flag menu (any option other than Like/Dislike goes there).
FEEDBACK_OPTIONS = ("Like", "Dislike", *(reason.capitalize() for reason in REASONS))
# Per client: a person rates a handful of answers; 950 KB ratings by the dozen filled the queue (issue 23).
RATINGS_PER_SESSION = RateLimit(30, 600)
RATINGS_PER_ADDRESS = RateLimit(120, 600)
NOT_RATEABLE = "This answer can no longer be rated (the app restarted or it is too old)."
TOO_MANY = "Too many ratings from this client: please wait a few minutes."


def _model_id(engine: ChatEngine) -> str:
    return engine.config.model or "none (NIH summaries only)"


def _client(request: gr.Request | None) -> tuple[str, str]:
    """An opaque server token for the client's session, and its network address (for the per-address limit)."""
    session = session_token(getattr(request, "session_hash", None))
    client = getattr(request, "client", None)
    return session, str(getattr(client, "host", None) or "unknown")


def _allowed(session: str, address: str) -> bool:
    return RATINGS_PER_SESSION.allow(session) and RATINGS_PER_ADDRESS.allow(address)


def _rating(issued: IssuedAnswer, liked: bool, reason: str, session: str) -> Rating:
    return Rating(liked=liked, question=issued.question, answer=issued.answer, session_id=session, reason=reason,
                  urls=issued.urls, sources=issued.sources, shown=issued.shown, model_id=issued.model_id,
                  settings=issued.settings)


def make_like_fn(store: FeedbackStore, ledger: AnswerLedger, remembered: int = 10_000):
    """The chatbot's like handler: one rating per thumb or flag click, made from the server's copy of the answer
    (found by the reference the rated message carries). The same choice repeated on the same message counts once
    (Gradio 6.31 sends each flag-menu click twice)."""
    last_choice: collections.OrderedDict[tuple, Any] = collections.OrderedDict()  # (session, reference) -> choice
    lock = threading.Lock()

    def repeated(key: tuple, choice: Any) -> bool:
        with lock:
            if last_choice.get(key) == choice:
                return True
            last_choice[key] = choice
            last_choice.move_to_end(key)
            if len(last_choice) > remembered:
                last_choice.popitem(last=False)
            return False

    def rate_message(data: gr.LikeData, history: list[dict], reason: str, request: gr.Request) -> str:
        if not isinstance(data.index, int) or not 0 <= data.index < len(history or ()):
            return reason
        text = _text(history[data.index].get("content"))
        match = AnswerLedger.REFERENCE.search(text)
        issued = ledger.get(match.group(0)) if match else None
        session, address = _client(request)
        if issued is None:
            gr.Warning(NOT_RATEABLE)
            return reason
        if repeated((session, match.group(0)), data.liked) or data.liked in ("", None):
            return reason  # the same choice sent again, or a thumb clicked off: nothing new to store
        if not _allowed(session, address):
            gr.Warning(TOO_MANY)
            return reason
        flagged = data.liked if isinstance(data.liked, str) else ""
        typed = (reason or "").strip() if isinstance(reason, str) else ""
        saved = store.record(_rating(issued, data.liked is True,
                                     " — ".join(part for part in (flagged.lower(), typed) if part), session))
        gr.Info("Thank you: your rating was saved." if saved else "Sorry: your rating could not be saved.")
        return "" if saved else reason

    return rate_message


def make_rate_fn(store: FeedbackStore, ledger: AnswerLedger):
    """The ``/rate`` API function: rate an answer the API gave, by its reference."""

    def rate(reference: str, liked: bool, reason: str = "", request: gr.Request = None) -> str:
        """Rate one answer: reference is the "ref-…" that ends an /ask or /chat reply, liked true for thumbs up.
        reason: optional ("wrong", "off-topic", "unclear", "unsafe" or up to 500 characters of text). The
        question, answer and sources stored are the server's own; personal details are removed from the reason.
        Returns "saved" or why it was not."""
        liked = _flag(liked, "liked")
        if reason is not None and not isinstance(reason, str):
            raise gr.Error("reason must be text")
        if len(reason or "") > LIMITS["reason"]:
            raise gr.Error(f"reason must be at most {LIMITS['reason']} characters")
        issued = ledger.get(reference)
        if issued is None:
            raise gr.Error("reference must be the answer reference (ref-…) that ends an /ask or /chat reply; "
                           + NOT_RATEABLE.lower())
        session, address = _client(request)
        if not _allowed(session, address):
            raise gr.Error(TOO_MANY)
        if store.record(_rating(issued, liked, reason or "", session)):
            return "saved"
        if store.is_full():
            return "not saved: the feedback store is full"
        return "not saved: the feedback store is unavailable"

    rate.__annotations__ = typing.get_type_hints(rate)
    return rate


def settings_inputs() -> list[gr.components.Component]:
    """The chat's additional inputs, in the order the chat function takes them. Unrendered, so that the
    ChatInterface places them in its settings accordion rather than where they were created."""
    return [
        gr.Slider(0.0, MAX_TEMPERATURE, value=DEFAULT_SAMPLING.temperature, step=0.05, label="Temperature",
                  info="0 = always the most likely word; higher = more varied, less reliable", render=False),
        gr.Slider(16, MAX_NEW_TOKENS, value=DEFAULT_SAMPLING.max_new_tokens, step=16, label="Max new tokens",
                  render=False),
        gr.Checkbox(value=True, label="Ground answers in NIH passages",
                    info="retrieve the closest MedQuAD passage, give it to the model, and cite it", render=False),
        gr.Checkbox(value=False, label="Show masked text",
                    info="when personal details were removed, show the message as the model saw it", render=False),
    ]


STATUS_REFRESH_S = 10


def build_app(engine: ChatEngine, status: Callable[[], str] | None = None,
              feedback: FeedbackStore | None = None) -> gr.Blocks:
    """The whole app: header, disclaimer, model status, streaming chat with settings, and the ``/ask`` endpoint.
    ``status`` returns one Markdown line about the model (e.g. background training progress), refreshed.
    ``feedback``: where 👍/👎 ratings go (and the ``/rate`` endpoint); None shows no rating buttons."""
    with gr.Blocks(title=TITLE, fill_height=True, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n\n{DESCRIPTION}", elem_id="gpt2chat-header")
        gr.Markdown(f"⚠️ **Not medical advice.** {DISCLAIMER}", elem_id="gpt2chat-disclaimer")
        status_line = gr.Markdown(status() if status else f"ℹ️ {engine.status.detail}", elem_id="gpt2chat-status")
        if status:
            gr.Timer(STATUS_REFRESH_S).tick(status, outputs=status_line, api_visibility="private", queue=False)
        chatbot = gr.Chatbot(label="gpt2chat", scale=1, min_height=420, buttons=["copy"],
                             feedback_options=FEEDBACK_OPTIONS if feedback is not None else None,
                             placeholder="Ask a question about a disease, a symptom or a treatment.")
        ledger = AnswerLedger() if feedback is not None else None
        chat = gr.ChatInterface(
            make_chat_fn(engine, FollowupFinder.from_index(engine.index), ledger),
            chatbot=chatbot,
            textbox=gr.Textbox(placeholder="Type a health question…", show_label=False, scale=7,
                               submit_btn=True, stop_btn=True, max_lines=6),
            additional_inputs=settings_inputs(),
            additional_inputs_accordion=gr.Accordion("Settings", open=False, render=False),
            examples=[[question] for question in EXAMPLES],
            cache_examples=False,  # Spaces default to caching, which would run the model for every example at boot
            flagging_mode="never",  # flagging writes messages to disk
            api_name="chat",
            api_description="Chat with history kept per client session; streams the growing Markdown reply.",
            analytics_enabled=False,
            fill_height=True,
        )
        gr.api(make_ask_fn(engine, ledger), api_name="ask")
        if feedback is not None:
            gr.Markdown(f"🗳️ {FEEDBACK_NOTICE}", elem_id="gpt2chat-feedback-notice")
            reason = gr.Textbox(label="Why? (optional, sent with your next 👍/👎)", max_lines=1, max_length=500)
            chatbot.like(make_like_fn(feedback, ledger), [chatbot, reason], [reason], api_visibility="private")
            gr.api(make_rate_fn(feedback, ledger), api_name="rate")
    return demo
