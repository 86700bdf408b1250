"""The Gradio app: a streaming chat UI and an ``/ask`` API endpoint over one ``ChatEngine``.

    from gpt2chat.ui import build_app, launch_options
    build_app(engine).queue(default_concurrency_limit=2, max_size=64).launch(**launch_options())

Everything below ``build_app`` is a small function that tests call without a browser. Gradio 6 takes the theme
and CSS in ``launch()``, hence ``launch_options``. Raw user messages are never logged: only reply statistics.
"""

from __future__ import annotations

import logging
import typing
from typing import Any, Iterator, Sequence

import gradio as gr

from gpt2chat.engine import DISCLAIMER, ChatEngine
from gpt2chat.generation import SamplingConfig

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
MAX_NEW_TOKENS = 320  # the API clamps to this too: longer answers only ramble on a model this small
DEFAULT_SAMPLING = SamplingConfig()

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


def history_pairs(history: Sequence[dict] | None) -> list[tuple[str, str]]:
    """Gradio's messages history → the engine's (user, assistant) pairs. Consecutive messages of one role are
    joined; a user turn that got no answer (stopped, failed) is dropped."""
    pairs: list[tuple[str, str]] = []
    user: str | None = None
    assistant: list[str] = []
    for message in history or ():
        role, text = message.get("role"), _text(message.get("content"))
        if role == "user":
            if user is not None and assistant:
                pairs.append((user, "\n\n".join(assistant)))
                user, assistant = None, []
            user = text if user is None or assistant else f"{user}\n{text}"
        elif role == "assistant" and user is not None and text:
            assistant.append(text)
    if user is not None and assistant:
        pairs.append((user, "\n\n".join(assistant)))
    return pairs


def sampling_config(temperature: float, max_new_tokens: float) -> SamplingConfig:
    """Slider or API values → sampling settings, clamped to what the model can use."""
    return SamplingConfig(
        max_new_tokens=max(1, min(int(max_new_tokens), MAX_NEW_TOKENS)),
        temperature=max(0.0, float(temperature)),
    )


def _log_reply(reply) -> None:
    stats = reply.stats
    if stats and stats.new_tokens:
        log.info("reply %s: %d prompt + %d new tokens, first after %.2f s, %.1f tokens/s", reply.category,
                 stats.prompt_tokens, stats.new_tokens, stats.seconds_to_first_token, stats.tokens_per_second)
    else:
        log.info("reply %s: no generation", reply.category)


def make_chat_fn(engine: ChatEngine):
    """The ChatInterface function: a generator yielding the growing Markdown reply, token by token."""

    def chat(message: str, history: list[dict], temperature: float, max_new_tokens: float, grounded: bool,
             show_masked: bool) -> Iterator[str]:
        """Answer one chat message, streaming the Markdown reply (answer, sources, disclaimer)."""
        shown, reply = None, None
        for reply in engine.stream(message, history_pairs(history), grounded=bool(grounded),
                                   sampling=sampling_config(temperature, max_new_tokens)):
            text = reply.markdown(bool(show_masked))
            if text != shown:  # a token that does not change the cleaned answer is not worth a round trip
                shown = text
                yield text
        if reply is not None:
            _log_reply(reply)

    return chat


def make_ask_fn(engine: ChatEngine):
    """The ``/ask`` API function: one question in, the final Markdown answer out."""

    def ask(message: str, temperature: float = DEFAULT_SAMPLING.temperature,
            max_new_tokens: int = DEFAULT_SAMPLING.max_new_tokens, grounded: bool = True) -> str:
        """Answer one medical question (no conversation history). Returns Markdown: the answer, links to the
        NIH source pages, a note when personal details were removed, and the disclaimer. temperature 0 is
        greedy decoding; max_new_tokens is capped at 320; grounded=False answers without a retrieved passage."""
        reply = engine.reply(message, grounded=bool(grounded), sampling=sampling_config(temperature, max_new_tokens))
        _log_reply(reply)
        return reply.markdown(show_masked=False)

    # gr.api reads the return annotation unresolved: a postponed "str" would be documented as Any.
    ask.__annotations__ = typing.get_type_hints(ask)
    return ask


def settings_inputs() -> list[gr.components.Component]:
    """The chat's additional inputs, in the order the chat function takes them. Unrendered, so that the
    ChatInterface places them in its settings accordion rather than where they were created."""
    return [
        gr.Slider(0.0, 1.5, value=DEFAULT_SAMPLING.temperature, step=0.05, label="Temperature",
                  info="0 = always the most likely word; higher = more varied, less reliable", render=False),
        gr.Slider(16, MAX_NEW_TOKENS, value=DEFAULT_SAMPLING.max_new_tokens, step=16, label="Max new tokens",
                  render=False),
        gr.Checkbox(value=True, label="Ground answers in NIH passages",
                    info="retrieve the closest MedQuAD passage, give it to the model, and cite it", render=False),
        gr.Checkbox(value=False, label="Show masked text",
                    info="when personal details were removed, show the message as the model saw it", render=False),
    ]


def build_app(engine: ChatEngine) -> gr.Blocks:
    """The whole app: header, disclaimer, streaming chat with settings, and the ``/ask`` endpoint."""
    with gr.Blocks(title=TITLE, fill_height=True, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n\n{DESCRIPTION}", elem_id="gpt2chat-header")
        gr.Markdown(f"⚠️ **Not medical advice.** {DISCLAIMER}", elem_id="gpt2chat-disclaimer")
        gr.ChatInterface(
            make_chat_fn(engine),
            chatbot=gr.Chatbot(label="gpt2chat", scale=1, min_height=420, buttons=["copy"],
                               feedback_options=None,
                               placeholder="Ask a question about a disease, a symptom or a treatment."),
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
        gr.api(make_ask_fn(engine), api_name="ask")
    return demo
