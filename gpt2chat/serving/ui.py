"""The Gradio app: a streaming chat UI and an ``/ask`` API endpoint over one ``ChatEngine``.

    from gpt2chat.serving.ui import build_app, launch_options
    build_app(engine).queue(default_concurrency_limit=2, max_size=64).launch(**launch_options())

Everything below ``build_app`` is a small function that tests call without a browser. The engine returns
structured replies; this module renders them as Markdown (``render_reply``) and reads the answer back out of
Gradio's history (``history_turns``). Text that comes from the user is escaped, never rendered as Markdown, so
a message cannot put links or images into a reply; corpus text is escaped too. Every API argument is checked with
a message that never echoes its value. Gradio 6 takes the theme, CSS and page script in ``launch()``, hence
``launch_options``. Raw user messages are never logged: only reply statistics. With a ``FeedbackStore``, every
answer gets 👍/👎 (reasons under the flag, and a box asking why after 👎) and ``/rate`` takes ratings over the
API, both by the answer reference each final reply carries: the rating is made from the server's copy of what
it showed (``AnswerLedger``), never from client text, and the store masks it. Each final answer offers follow-up
questions on the same focus as clickable options
(``gpt2chat.chat.followups``). Chats are saved in the visitor's browser only (``save_history``) and exported there.
With an ``AnswerScheduler`` the chat, ``/chat`` and ``/ask`` take turns at the answer slots per client
(``gpt2chat.serving.fairness``).
"""

from __future__ import annotations

import collections
import contextlib
import html
import json
import logging
import math
import re
import threading
import typing
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from gpt2chat.chat.engine import EXTRACT_NOTICE, ChatEngine, ChatReply, Source, Turn
from gpt2chat.chat.grounding import split_sentences
from gpt2chat.chat.kinds import AnswerKind, Category
from gpt2chat.corpus.sites import archived_page
from gpt2chat.serving.fairness import AnswerScheduler, TooManyWaiting, client_address, network_of, penalise
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
REPLY_DISCLAIMER = "Not medical advice: ask a doctor or pharmacist about your own situation."  # under every reply
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
        link_text_color="*secondary_700",
        link_text_color_dark="*secondary_200",
        body_text_color_subdued="*neutral_700",
        body_text_color_subdued_dark="*neutral_300",
        input_placeholder_color="*neutral_600",
        input_placeholder_color_dark="*neutral_300",
    )


def launch_options() -> dict[str, Any]:
    """The ``launch()`` keyword arguments that style the app (Gradio 6 moved theme and CSS there)."""
    return {"theme": medical_theme(), "css": CSS, "js": JS, "head": HEAD}


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


# --- one reply as Markdown --------------------------------------------------------------------------------------

# What the masker removed, in the words of the person who typed it (types of gpt2chat.guard.masking), in the order
# people list them.
PLAIN_NAMES = {
    "PERSON": "name", "DATE_OF_BIRTH": "date of birth", "EMAIL": "e-mail address", "PHONE": "phone number",
    "ADDRESS": "address", "US_SSN": "social security number", "MEDICAL_RECORD": "medical record number",
    "PASSPORT": "passport number", "DRIVERS_LICENSE": "driver's license number", "CREDIT_CARD": "card number",
    "IBAN": "bank account number", "BANK_ACCOUNT": "bank account number", "IP_ADDRESS": "IP address",
    "URL": "web address",
}
PRIVACY_MARK = "🔒"
URGENT_CLASS = "gpt2chat-urgent"
_MARKDOWN_ACTIVE = re.compile(r"([\\`*_\[\]])")
# A list item as the corpus writes it ("Symptoms include - increased thirst - increased hunger …").
_ITEM = re.compile(r"(?:^|\s+)- (?=[<\w\"“(])")
_FIRST_SENTENCE_END = re.compile(r"(?<=[.!?])((?:</mark>)?)\s+(?=[<\"“(]?[A-Z0-9])")
_PHONE_NUMBER = re.compile(r"(?<![\w-])(1-\d{3}-\d{3}-\d{4}|\d{3})(?![\w-])")  # 911, 112, 988, 1-800-222-1222


def removed_in_plain_words(types: Sequence[str]) -> str:
    """``["DATE_OF_BIRTH", "EMAIL", "PERSON"]`` -> "your name, date of birth and e-mail address"."""
    order = list(PLAIN_NAMES)
    names = list(dict.fromkeys(PLAIN_NAMES.get(t, t.lower().replace("_", " "))
                               for t in sorted(types, key=lambda t: order.index(t) if t in order else len(order))))
    if not names:
        return ""
    return "your " + (names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}")


def privacy_note(reply: ChatReply, show_masked: bool = False) -> str:
    if not reply.masked_types:
        return ""
    removed = removed_in_plain_words(reply.masked_types)
    note = f"{PRIVACY_MARK} Removed from your message before it was answered: {removed}."
    if show_masked and reply.masked_message:
        note += f" The model saw: {literal(reply.masked_message)}"
    return note


def _escape(text: str) -> str:
    """Corpus text as Markdown that shows it as written: no HTML, emphasis or link syntax takes effect."""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", html.escape(text, quote=False))


def markdown_lists(text: str) -> str:
    """The corpus's run-in lists as Markdown lists: "Symptoms include - thirst - hunger. Many people …" becomes
    the lead-in, one line per item, and the text after the list as its own paragraph. A single dash stays prose."""
    pieces = _ITEM.split(text)
    if len(pieces) < 3:
        return text
    blocks, items = [pieces[0].strip()], []
    for piece in pieces[1:]:
        end = _FIRST_SENTENCE_END.search(piece)
        item, rest = (piece[:end.start()] + end.group(1), piece[end.end():]) if end else (piece, "")
        items.append(item.strip())
        if rest.strip():  # the list ends with this item's sentence: what follows is prose (or the next list's lead)
            blocks += ["\n".join(f"- {i}" for i in items), rest.strip()]
            items = []
    if items:
        blocks.append("\n".join(f"- {i}" for i in items))
    return "\n\n".join(block for block in blocks if block)


def _sentence_key(sentence: str) -> str:
    return " ".join(sentence.removeprefix("- ").lower().split())


def _links(sources: Sequence[Source]) -> str:
    labels: collections.Counter = collections.Counter()
    links = []
    for source in sources:
        label = source.label
        labels[label] += 1
        shown = label if labels[label] == 1 else f"{label}, page {labels[label]}"  # two links never read the same
        links.append(f"[{_escape(shown)}]({source.url})")
    return " · ".join(links)


def _highlighted(text: str, quoted: set[str], shown: set[str]) -> str:
    """The passage with the sentences the answer quotes in <mark>, each list item marked on its own. Sentences in
    ``shown`` (another cited page's text, already above) are left out, and added to it."""
    parts = []
    for sentence in split_sentences(text):
        key = _sentence_key(sentence)
        if key in shown:
            continue
        shown.add(key)
        escaped = _escape(sentence)
        if key in quoted:
            escaped = "".join(piece if piece.strip() in ("", "-") else f"<mark>{piece}</mark>"
                              for piece in re.split(r"((?:^|\s+)- )", escaped))
        parts.append(escaped)
    return markdown_lists(" ".join(parts))


def nih_text(reply: ChatReply, source: Source, label: bool, shown: set[str]) -> str:
    """The passage the answer came from, folded: "Show the NIH text", with the quoted sentences highlighted.
    Empty when every sentence of it was already shown for an earlier source (NIH sites copy each other's text)."""
    text = source.text or (reply.evidence if source == reply.sources[0] else "")
    quoted = {_sentence_key(s) for s in split_sentences(reply.answer or "")}
    body = _highlighted(text or "", quoted, shown)
    if not body:
        return ""
    summary = f"Show the NIH text ({_escape(source.label)})" if label else "Show the NIH text"
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def urgent_callout(notice: str) -> str:
    """An emergency reply: a high-contrast callout that screen readers announce first (role="alert"), with every
    phone number a tap-to-call link."""
    paragraphs = [html.escape(p.strip(), quote=False) for p in notice.split("\n\n") if p.strip()]
    body = "".join(f"<p>{_PHONE_NUMBER.sub(_tel_link, p)}</p>" for p in paragraphs)
    return (f'<div class="{URGENT_CLASS}" role="alert"><p><strong>⚠️ This may be an emergency.</strong></p>'
            f"{body}</div>")


def _tel_link(match: re.Match) -> str:
    return f'<a href="tel:{match.group(1).replace("-", "")}">{match.group(1)}</a>'


def render_reply(reply: ChatReply, show_masked: bool = False) -> str:
    """The reply as one Markdown message: the privacy note (what was removed, in plain words), any safety notice,
    the answer (lists as lists); after ``SECTION_BREAK`` the pages it quotes as named links, the other retrieved
    pages as "Related pages", the NIH text folded behind "Show the NIH text" with the quoted sentences
    highlighted, and a one-line disclaimer (the full one stays on the page). Emergencies get an urgent callout."""
    privacy = privacy_note(reply, show_masked)
    if reply.category == Category.EMERGENCY:
        return "\n\n".join(part for part in (privacy, urgent_callout(reply.notice or "")) if part)
    if reply.category == Category.INVALID:
        return reply.notice or ""
    answer = reply.answer or ("…" if not reply.finished else "")
    if answer and answer != "…":
        answer = markdown_lists(_escape(answer))
        if reply.answer_kind == AnswerKind.EXTRACT:
            answer = f"**{EXTRACT_NOTICE}:** {answer}"
    head = "\n\n".join(part for part in (privacy, reply.notice, answer) if part)
    quoted, related = reply.quoted_sources, reply.related_sources  # the engine marks what the answer quotes
    tail = []
    if quoted:
        tail.append(f"**{'Source' if len(quoted) == 1 else 'Sources'}:** {_links(quoted)}")
    if related:
        tail.append(f"**Related pages:** {_links(related)}")
    if not reply.sources and reply.search_url:
        tail.append(f"**Search MedlinePlus instead:** [medlineplus.gov search]({reply.search_url})")
    shown: set[str] = set()
    tail += [block for block in (nih_text(reply, s, len(quoted) > 1, shown) for s in quoted) if block]
    tail.append(f"_{REPLY_DISCLAIMER}_")
    return head + SECTION_BREAK + "\n\n".join(tail)


def answer_of(rendered: str) -> str:
    """The answer part of a rendered reply (Gradio's history holds rendered replies): no privacy note, no HTML."""
    head = rendered.split(SECTION_BREAK, 1)[0]
    paragraphs = [p for p in head.split("\n\n") if p and not p.startswith(PRIVACY_MARK)]
    return re.sub(r"<[^>]+>", " ", "\n\n".join(paragraphs)).strip()


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


def readable_followup(question: str) -> bool:
    """False for a question built on a focus that is a booklet title ("What is I Can Lower My Risk for Type 2
    Diabetes: A Guide for American Indians?"): a colon or question mark inside the focus never reads as a question."""
    return not re.search(r"[:?]", question.rstrip("? "))


RATEABLE = (Category.ANSWER, Category.BOUNDARY, Category.NO_ANSWER)


def with_reference(rendered: str, reply: ChatReply, question: str, engine: ChatEngine,
                   ledger: AnswerLedger | None, settings: dict) -> str:
    """The final rendered reply with the reference ratings send back (the server keeps what it showed: the pages
    the answer cites, a retired site's page under its own URL rather than its archive copy's)."""
    if ledger is None or not reply.finished or reply.category not in RATEABLE:
        return rendered
    cited = reply.quoted_sources
    reference = ledger.issue(IssuedAnswer(
        question=reply.masked_message or question, answer=answer_of(rendered), shown=reply.answer_kind,
        urls=tuple(archived_page(s.url) for s in cited), sources=tuple(s.source for s in cited),
        model_id=_model_id(engine), settings=settings))
    return f"{rendered}\n\n<sub>Answer reference: {reference}</sub>"


# How many answer requests of each endpoint may wait inside the app for the scheduler's turn: Gradio runs each in a
# thread of its pool (40), which the answers being written also need, so three endpoints x 8 leave it room.
ANSWER_WAITING_ROOM = 8
TOO_MANY_QUESTIONS = ("You already have several questions waiting for an answer: please wait for them before "
                      "asking more.")


@contextlib.contextmanager
def refusals_charged(request: gr.Request | None) -> Iterator[None]:
    """A gr.Error raised inside (an argument of the wrong kind, an unknown reference, too many ratings) is charged
    to the client's request budget (``fairness.penalise``): it cost a pass through Gradio's queue, and a person's
    clicks never cause one."""
    try:
        yield
    except gr.Error:
        if request is not None:
            penalise(_client(request)[1])
        raise


@contextlib.contextmanager
def answer_turn(scheduler: AnswerScheduler | None, request: gr.Request | None) -> Iterator[None]:
    """The client's turn at the answer slots (nothing to wait for without a scheduler); a client with too many
    questions waiting gets a clear refusal, before any work is done for it."""
    if scheduler is None:
        yield
        return
    client = _client(request)[1]
    try:
        scheduler.acquire(client)
    except TooManyWaiting:
        raise gr.Error(TOO_MANY_QUESTIONS) from None
    try:
        yield
    finally:
        scheduler.release(client)


def make_chat_fn(engine: ChatEngine, followups: FollowupFinder | None = None, ledger: AnswerLedger | None = None,
                 scheduler: AnswerScheduler | None = None):
    """The ChatInterface function: a generator yielding the growing Markdown reply, token by token; with
    ``followups``, the finished reply comes last as a message whose options are follow-up questions; with
    ``ledger``, the finished reply carries an answer reference for ratings; with ``scheduler``, the answer waits
    for the client's fair turn."""

    def chat(message: str, history: list[dict], temperature: float, max_new_tokens: float, grounded: bool,
             show_masked: bool, request: gr.Request = None) -> Iterator[str]:
        """Answer one chat message, streaming the Markdown reply (answer, sources, disclaimer)."""
        shown, reply = None, None
        with refusals_charged(request):
            sampling = sampling_config(temperature, max_new_tokens)
            show_masked, grounded = _flag(show_masked, "show_masked"), _flag(grounded, "grounded")
            message = _message(message)
        turns = history_turns(history)
        with answer_turn(scheduler, request):
            for reply in engine.stream(message, turns, grounded=grounded, sampling=sampling):
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
        answered = reply is not None and reply.sources and reply.category in (Category.ANSWER, Category.BOUNDARY)
        if followups is not None and answered:
            asked = [turn.question for turn in turns]  # never offer what was already asked
            focus = (reply.quoted_sources or reply.sources)[0].title  # what the answer is about: the page it quotes
            suggestions = [q for q in followups.suggest_for_focus(focus, asked=message, exclude=asked)
                           if readable_followup(q)]
            if suggestions:  # clicking an option sends it as the next message (ChatInterface.option_clicked)
                yield gr.ChatMessage(content=shown, options=[{"value": q} for q in suggestions])

    return chat


def make_ask_fn(engine: ChatEngine, ledger: AnswerLedger | None = None, scheduler: AnswerScheduler | None = None):
    """The ``/ask`` API function: one question in, the final Markdown answer out (with ``ledger``, ending with the
    answer reference that ``/rate`` takes; with ``scheduler``, after the client's fair turn)."""

    def ask(message: str, temperature: float = DEFAULT_SAMPLING.temperature,
            max_new_tokens: int = DEFAULT_SAMPLING.max_new_tokens, grounded: bool = True,
            request: gr.Request = None) -> str:
        """Answer one medical question (no conversation history). Returns Markdown: the answer, links to the
        NIH source pages, a note when personal details were removed, and the disclaimer. temperature (0 to 1.5)
        0 is greedy decoding; max_new_tokens is 1 to 320; grounded=False leaves the passage out of the model's
        prompt (the answer is still checked against it)."""
        with refusals_charged(request):
            sampling = sampling_config(temperature, max_new_tokens)
            grounded = _flag(grounded, "grounded")
            message = _message(message)
        with answer_turn(scheduler, request):
            reply = engine.reply(message, grounded=grounded, sampling=sampling)
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
RATINGS_PER_NETWORK = RateLimit(480, 600)  # four addresses' worth (fairness.network_of)
# One answer is rated by the person it was given to: a thumb, a change of mind, a few flag reasons and a typed reason.
# The soak's rating flood re-rated one answer about 100 times a minute from each address, each rating masked under
# the lock every question's masking also takes.
RATINGS_PER_ANSWER = RateLimit(6, 3600)
NOT_RATEABLE = "This answer can no longer be rated (the app restarted or it is too old)."
TOO_MANY = "Too many ratings from this client: please wait a few minutes."


def _model_id(engine: ChatEngine) -> str:
    return engine.config.model or "none (NIH summaries only)"


def _client(request: gr.Request | None) -> tuple[str, str]:
    """An opaque server token for the client's session, and its network address (for per-client limits)."""
    session = session_token(getattr(request, "session_hash", None))
    peer = getattr(getattr(request, "client", None), "host", None)
    headers = getattr(request, "headers", None) or {}
    return session, client_address(str(peer) if peer else None, headers.get("x-forwarded-for"))


def _allowed(session: str, address: str, reference: str) -> bool:
    """Whether one more rating is allowed: per session, address, network and answer (checked before any masking)."""
    return (RATINGS_PER_ANSWER.allow(reference) and RATINGS_PER_SESSION.allow(session)
            and RATINGS_PER_ADDRESS.allow(address) and RATINGS_PER_NETWORK.allow(network_of(address)))


def _rating(issued: IssuedAnswer, liked: bool, reason: str, session: str) -> Rating:
    return Rating(liked=liked, question=issued.question, answer=issued.answer, session_id=session, reason=reason,
                  urls=issued.urls, sources=issued.sources, shown=issued.shown, model_id=issued.model_id,
                  settings=issued.settings)


def _issued(ledger: AnswerLedger, history: Sequence[dict], index: Any) -> tuple[str | None, IssuedAnswer | None]:
    """The reference the rated message carries and the server's copy of that answer (None when unknown)."""
    if not isinstance(index, int) or not 0 <= index < len(history or ()):
        return None, None
    match = AnswerLedger.REFERENCE.search(_text(history[index].get("content")))
    return (match.group(0), ledger.get(match.group(0))) if match else (None, None)


def make_like_fn(store: FeedbackStore, ledger: AnswerLedger, remembered: int = 10_000):
    """The chatbot's like handler: one rating per thumb or flag click, made from the server's copy of the answer
    (found by the reference the rated message carries). The same choice repeated on the same message counts once
    (Gradio 6.31 sends each flag-menu click twice). Returns the index of a message just given 👎 (None otherwise)
    and an empty reason box (the page shows that box after a 👎: JS)."""
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

    def rate_message(data: gr.LikeData, history: list[dict], request: gr.Request):
        reference, issued = _issued(ledger, history, data.index)
        session, address = _client(request)
        if issued is None:
            if reference is not None or isinstance(data.index, int):
                gr.Warning(NOT_RATEABLE)
            return None, gr.update()
        if repeated((session, reference), data.liked) or data.liked in ("", None):
            return gr.update(), gr.update()  # the same choice sent again, or a thumb clicked off: nothing new
        if not _allowed(session, address, reference):
            gr.Warning(TOO_MANY)
            return None, gr.update()
        flagged = data.liked.lower() if isinstance(data.liked, str) else ""
        saved = store.record(_rating(issued, data.liked is True, flagged, session))
        gr.Info("Thank you: your rating was saved." if saved else "Sorry: your rating could not be saved.")
        return (data.index if data.liked is False else None), ""

    return rate_message


def make_reason_fn(store: FeedbackStore, ledger: AnswerLedger):
    """The "why?" box shown after a 👎: its text is stored as the reason of that message's rating (a row of its
    own, as a flag-menu reason is), with the server's copy of the answer, masked like everything else."""

    def send_reason(index: int | None, history: list[dict], reason: str, request: gr.Request):
        typed = reason.strip() if isinstance(reason, str) else ""
        reference, issued = _issued(ledger, history, index)
        if issued is not None and typed:
            session, address = _client(request)
            if not _allowed(session, address, reference):
                gr.Warning(TOO_MANY)
                return None, ""
            saved = store.record(_rating(issued, False, typed[: LIMITS["reason"]], session))
            gr.Info("Thank you: your reason was saved." if saved else "Sorry: your reason could not be saved.")
        return None, ""

    return send_reason


def make_rate_fn(store: FeedbackStore, ledger: AnswerLedger):
    """The ``/rate`` API function: rate an answer the API gave, by its reference."""

    def rate(reference: str, liked: bool, reason: str = "", request: gr.Request = None) -> str:
        """Rate one answer: reference is the "ref-…" that ends an /ask or /chat reply, liked true for thumbs up.
        reason: optional ("wrong", "off-topic", "unclear", "unsafe" or up to 500 characters of text). The
        question, answer and sources stored are the server's own; personal details are removed from the reason.
        Returns "saved" or why it was not."""
        with refusals_charged(request):
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
            if not _allowed(session, address, reference):
                raise gr.Error(TOO_MANY)
        if store.record(_rating(issued, liked, reason or "", session)):
            return "saved"
        if store.is_full():
            return "not saved: the feedback store is full"
        return "not saved: the feedback store is unavailable"

    rate.__annotations__ = typing.get_type_hints(rate)
    return rate


def settings_inputs(model_controls: bool = True) -> list[gr.components.Component]:
    """The chat's additional inputs, in the order the chat function takes them. Unrendered, so that the
    ChatInterface places them in its "Advanced" accordion rather than where they were created. The first three
    only matter when the model's own text is served (``model_controls_matter``): ``model_controls`` shows them."""
    return [
        gr.Slider(0.0, MAX_TEMPERATURE, value=DEFAULT_SAMPLING.temperature, step=0.05, label="Temperature",
                  info="0 = always the most likely word; higher = more varied, less reliable", render=False,
                  visible=model_controls),
        gr.Slider(16, MAX_NEW_TOKENS, value=DEFAULT_SAMPLING.max_new_tokens, step=16, label="Max new tokens",
                  render=False, visible=model_controls),
        gr.Checkbox(value=True, label="Ground answers in NIH passages", visible=model_controls,
                    info="retrieve the closest MedQuAD passage, give it to the model, and cite it", render=False),
        gr.Checkbox(value=False, label="Show masked text",
                    info="when personal details were removed, show the message as the model saw it", render=False),
    ]


def model_controls_matter(engine: ChatEngine) -> bool:
    """Whether temperature, length and grounding change anything: only when the model's own text is served."""
    return engine.generator is not None and engine.status.trusted


STATUS_REFRESH_S = 10

# Light and dark colours chosen for WCAG AA contrast (>= 4.5:1 on the page and message backgrounds; checked by the
# axe-core scan in tests/test_browser.py). Phones (<= 640 px): the header shrinks to its title, the input stays at
# the bottom of the screen, and every button is at least 44 px square.
CSS = """
.gradio-container { max-width: 1100px !important; margin: 0 auto !important; }
#gpt2chat-header h1 { color: var(--primary-800); margin: 0 0 0.25rem; font-size: 1.6rem; }
.dark #gpt2chat-header h1 { color: var(--primary-200); }
#gpt2chat-header p, #gpt2chat-status p { color: var(--body-text-color); }
#gpt2chat-disclaimer {
  border-left: 4px solid var(--primary-600); background: var(--primary-50);
  border-radius: var(--radius-lg); padding: 0.5rem 1rem;
}
.dark #gpt2chat-disclaimer { background: var(--primary-950); }
#gpt2chat-disclaimer p { margin: 0; font-size: var(--text-sm); }
.message-wrap a, .prose a { color: var(--link-text-color) !important; text-decoration: underline; }
.message-wrap hr { margin: 0.75rem 0; opacity: 0.4; }
.message-wrap details summary { cursor: pointer; font-weight: 600; color: var(--link-text-color); min-height: 44px;
  display: list-item; padding: 0.6rem 0; }
.message-wrap details { border-left: 3px solid var(--neutral-300); padding-left: 0.75rem; margin: 0.5rem 0; }
.message-wrap mark { background: #fff3b0; color: #1a1a1a; padding: 0 0.1em; }
.gpt2chat-urgent {
  background: #8b0000; color: #ffffff !important; border: 3px solid #ffffff; outline: 3px solid #8b0000;
  border-radius: var(--radius-lg); padding: 0.75rem 1rem; font-size: 1.05rem;
}
.gpt2chat-urgent p { color: #ffffff !important; margin: 0.25rem 0; }
.gpt2chat-urgent strong { color: #ffffff !important; }
.gpt2chat-urgent a[href^="tel:"] {
  display: inline-block; min-width: 44px; min-height: 44px; box-sizing: border-box; padding: 0.6rem 0.75rem;
  margin: 0.15rem; background: #ffffff; color: #8b0000 !important; font-weight: 700; border-radius: 0.5rem;
  text-align: center; line-height: 1.2; text-decoration: underline;
}
textarea::placeholder { color: var(--body-text-color) !important; opacity: 0.75; }
:focus-visible { outline: 3px solid var(--secondary-600) !important; outline-offset: 2px; }
div:not(#gpt2chat-reason) > #gpt2chat-reason {  /* placed over the chat's bottom edge by the page's JS */
  position: fixed; z-index: 60; border: 2px solid var(--secondary-600); box-shadow: 0 6px 24px rgba(0, 0, 0, 0.25);
}
.gpt2chat-hidden { display: none !important; }
@media (max-width: 640px) {
  #gpt2chat-header p { display: none; }
  #gpt2chat-header h1 { font-size: 1.2rem; }
  #gpt2chat-disclaimer p { font-size: 0.8rem; line-height: 1.3; }
  #gpt2chat-input {
    position: fixed !important; left: 0; right: 0; bottom: 0; z-index: 50; margin: 0 !important;
    border-top: 1px solid var(--border-color-primary); box-shadow: 0 -2px 8px rgba(0, 0, 0, 0.12);
  }
  .gradio-container { padding-bottom: 96px !important; }
  #gpt2chat-chat { height: calc(100dvh - 170px) !important; max-height: none !important; }  /* less the input */
  button, .icon-button, [role="button"], textarea { min-width: 44px !important; min-height: 44px !important; }
  .row:has(> .column #gpt2chat-chat) { flex-direction: column-reverse; }  /* saved chats after the chat */
}
"""

# Gradio scopes ``css`` to the app's main area; its footer ("Use via API · Built with Gradio · Settings") is
# styled from the page's head instead.
HEAD = """<style>
footer, footer a, footer button { color: var(--body-text-color) !important; }
@media (max-width: 640px) {
  footer a, footer button { display: inline-flex !important; align-items: center; min-height: 44px !important; }
}
</style>"""

# Runs once per page load. A new question is scrolled to the top of the view, so its answer reads from the start
# (Gradio's autoscroll keeps the bottom in view, and showed nothing of a new reply to someone who had scrolled up);
# an emergency reply is scrolled into view; when a reply ends (the input is enabled again, the stop button gone)
# focus goes back to the input.
JS = """
() => {
  const done = new WeakSet();
  let wasBusy = false;
  // Scroll the chat log (not the page) so that `element` is at its top, then bring the chat itself into view.
  const reveal = (element) => {
    const log = element.closest('[role="log"]');
    if (log) {
      log.scrollTop += element.getBoundingClientRect().top - log.getBoundingClientRect().top - 8;
    }
    document.querySelector('#gpt2chat-chat').scrollIntoView({block: 'nearest'});
  };
  const react = () => {
    const users = document.querySelectorAll('#gpt2chat-chat [data-testid="user"]');
    const last = users[users.length - 1];
    if (last && !done.has(last)) { done.add(last); reveal(last); }
    document.querySelectorAll('.gpt2chat-urgent').forEach((callout) => {
      if (!done.has(callout)) { done.add(callout); reveal(callout); }
    });
    const input = document.querySelector('#gpt2chat-input textarea');
    const stop = document.querySelector('#gpt2chat-input .stop-button');
    const busy = Boolean(input && input.disabled) || Boolean(stop && stop.offsetParent !== null);
    if (wasBusy && !busy && input) { input.focus(); }
    wasBusy = busy;
    // Gradio's example questions are buttons in a role="list" without list items: an axe "critical" finding.
    document.querySelectorAll('.examples[role="list"]').forEach((examples) => {
      examples.setAttribute('role', 'group');
      examples.setAttribute('aria-label', 'Example questions');
    });
  };
  // After a 👎 the box asking why opens over the chat's bottom edge, by the rated messages; sending or declining
  // closes it. (Not moved in the page: Gradio's Svelte would then draw the box twice.) Gradio draws a group as two
  // nested elements with the same id: both are shown or hidden.
  document.addEventListener('click', (event) => {
    const boxes = document.querySelectorAll('#gpt2chat-reason');
    if (event.target.closest('#gpt2chat-chat [aria-label="Dislike"]')) {
      boxes.forEach((box) => box.classList.remove('gpt2chat-hidden'));
      const chat = document.querySelector('#gpt2chat-chat').getBoundingClientRect();
      const box = boxes[0];
      if (!box) { return; }
      box.style.left = `${chat.left + 12}px`;
      box.style.width = `${Math.min(560, chat.width - 24)}px`;
      box.style.top = `${Math.max(chat.top, chat.bottom - box.offsetHeight - 12)}px`;
      setTimeout(() => box.querySelector('textarea').focus(), 50);
    } else if (event.target.closest('#gpt2chat-reason button')) {
      boxes.forEach((box) => box.classList.add('gpt2chat-hidden'));
    }
  }, true);
  new MutationObserver(react).observe(document.body,
    {childList: true, subtree: true, attributes: true, attributeFilter: ['disabled', 'class', 'style']});
}
"""

# The chat as a Markdown file, made in the browser from what the page shows: nothing is sent or stored anywhere.
EXPORT_JS = """
(history) => {
  const text = (content) => typeof content === 'string' ? content
    : Array.isArray(content) ? content.map(text).filter(Boolean).join('\\n\\n')
    : (content && typeof content.text === 'string') ? content.text : '';
  const plain = (markdown) => markdown.replace(/<details[\\s\\S]*?<\\/details>/g, '')
    .replace(/<\\/p>/g, '\\n\\n').replace(/<[^>]+>/g, '').replace(/\\n{3,}/g, '\\n\\n').trim();
  const lines = ['# gpt2chat conversation', '', `Exported ${new Date().toISOString().slice(0, 10)}. ` +
                 DISCLAIMER, ''];
  for (const message of history || []) {
    lines.push(message.role === 'user' ? '## You' : '## gpt2chat', '', plain(text(message.content)), '');
  }
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([lines.join('\\n')], {type: 'text/markdown'}));
  link.download = 'gpt2chat-conversation.md';
  document.body.appendChild(link);
  link.click();
  link.remove();
  return [];
}
"""


def reopen_last_chat(saved: list | None):
    """On page load: the most recent saved chat (kept in this browser's storage by ``save_history``) is shown
    again, so a reload keeps the conversation."""
    if saved:
        return 0, saved[0], saved[0]
    return None, [], []


def build_app(engine: ChatEngine, status: Callable[[], str] | None = None,
              feedback: FeedbackStore | None = None, scheduler: AnswerScheduler | None = None) -> gr.Blocks:
    """The whole app: header, disclaimer, model status, streaming chat with saved chats and settings, and the
    ``/ask`` endpoint. ``status`` returns one Markdown line about the model (e.g. background training progress),
    read at every page load and refreshed. ``feedback``: where 👍/👎 ratings go (and the ``/rate`` endpoint);
    None shows no rating buttons. ``scheduler``: the answer slots the chat, ``/chat`` and ``/ask`` share fairly
    between clients (None: each endpoint runs at the queue's concurrency)."""
    answer_limit = ANSWER_WAITING_ROOM if scheduler is not None else "default"

    def status_line_now() -> str:
        return status() if status else f"ℹ️ {engine.status.detail}"

    with gr.Blocks(title=TITLE, fill_height=True, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n\n{DESCRIPTION}", elem_id="gpt2chat-header")
        gr.Markdown(f"⚠️ **Not medical advice.** {DISCLAIMER}", elem_id="gpt2chat-disclaimer")
        status_line = gr.Markdown(status_line_now(), elem_id="gpt2chat-status")
        demo.load(status_line_now, outputs=status_line, api_visibility="private", queue=False, show_progress="hidden")
        if status:
            gr.Timer(STATUS_REFRESH_S).tick(status_line_now, outputs=status_line, api_visibility="private",
                                            queue=False, show_progress="hidden")
        chatbot = gr.Chatbot(label="Conversation", show_label=False, elem_id="gpt2chat-chat", scale=1,
                             height="58vh", min_height=320, autoscroll=False, buttons=["copy"],
                             feedback_options=FEEDBACK_OPTIONS if feedback is not None else None,
                             placeholder="Ask a question about a disease, a symptom or a treatment.")
        inputs = settings_inputs(model_controls_matter(engine))  # and again at each page load: the model may swap
        ledger = AnswerLedger() if feedback is not None else None
        chat = gr.ChatInterface(
            make_chat_fn(engine, FollowupFinder.from_index(engine.index), ledger, scheduler),
            chatbot=chatbot,
            textbox=gr.Textbox(label="Your health question", placeholder="Type a health question…",
                               show_label=False, scale=7, submit_btn="Send", stop_btn="Stop", max_lines=6,
                               elem_id="gpt2chat-input"),
            additional_inputs=inputs,
            additional_inputs_accordion=gr.Accordion("Advanced", open=False, render=False),
            examples=[[question] for question in EXAMPLES],
            cache_examples=False,  # Spaces default to caching, which would run the model for every example at boot
            flagging_mode="never",  # flagging writes messages to disk
            save_history=True,  # chats are kept in the browser's own storage, listed beside the chat
            api_name="chat",
            api_description="Chat with history kept per client session; streams the growing Markdown reply.",
            analytics_enabled=False,
            fill_height=True,
            concurrency_limit=answer_limit,
        )
        demo.load(lambda: [gr.update(visible=model_controls_matter(engine))] * 3, outputs=inputs[:3],
                  api_visibility="private", queue=False, show_progress="hidden")
        demo.load(reopen_last_chat, inputs=chat.saved_conversations,
                  outputs=[chat.conversation_id, chat.chatbot, chat.chatbot_state], api_visibility="private",
                  queue=False, show_progress="hidden")
        export = gr.Button("Export this chat (Markdown)", size="sm", variant="secondary", elem_id="gpt2chat-export")
        export.click(None, inputs=chatbot, js=EXPORT_JS.replace("DISCLAIMER", json.dumps(DISCLAIMER)))
        gr.api(make_ask_fn(engine, ledger, scheduler), api_name="ask", concurrency_limit=answer_limit)
        if feedback is not None:
            gr.Markdown(f"🗳️ {FEEDBACK_NOTICE}", elem_id="gpt2chat-feedback-notice")
            disliked = gr.State(None)
            # Shown and hidden by the page's JS (a 👎 shows it, its buttons hide it): immediate, and the CSS places it
            # over the chat's bottom edge, just above the input.
            with gr.Group(elem_id="gpt2chat-reason", elem_classes=["gpt2chat-hidden"]):
                reason = gr.Textbox(label="What was wrong with this answer? (optional)", max_lines=2,
                                    max_length=500)
                with gr.Row():
                    send = gr.Button("Send reason", size="sm", variant="primary")
                    close = gr.Button("No reason", size="sm")
            chatbot.like(make_like_fn(feedback, ledger), [chatbot], [disliked, reason], api_visibility="private",
                         show_progress="hidden")
            send_reason = make_reason_fn(feedback, ledger)
            for event in (send.click, reason.submit):
                event(send_reason, [disliked, chatbot, reason], [disliked, reason], api_visibility="private",
                      show_progress="hidden")
            close.click(lambda: (None, ""), outputs=[disliked, reason], api_visibility="private", queue=False)
            gr.api(make_rate_fn(feedback, ledger), api_name="rate")
    return demo
