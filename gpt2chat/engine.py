"""The chat engine: one object that the UI, the API and the reports all use.

    message → check input → mask PII → safety → retrieve NIH passages → prompt (history within the context
    budget, reference passage when grounded) → stream tokens → post-process → answer + citations + disclaimer

The model, the masker and the retrieval index are loaded once per process (``ChatEngine.load``), never per
message. Raw messages are never logged or written anywhere: only the masked text goes past ``mask``.

    python -m gpt2chat.engine "How is glaucoma treated?" [--model DIR] [--no-grounding]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Iterator, Sequence

from gpt2chat import settings
from gpt2chat.generation import GenerationStats, SamplingConfig, StreamingGenerator
from gpt2chat.prompt import ANSWER_PREFIX, QUESTION_PREFIX, REFERENCE_PREFIX, build_prompt
from gpt2chat.tokens import reference_passage

DISCLAIMER = (
    "General information from NIH sources, not medical advice. It may be incomplete or wrong; "
    "ask a doctor or pharmacist about your own situation. In an emergency, call your local emergency number."
)
# The rendered reply puts the answer before this line, so history can recover the answer alone.
SECTION_BREAK = "\n\n---\n"


@dataclasses.dataclass(frozen=True)
class Source:
    title: str
    url: str
    source: str


@dataclasses.dataclass
class ChatReply:
    answer: str = ""
    sources: list[Source] = dataclasses.field(default_factory=list)
    masked_types: list[str] = dataclasses.field(default_factory=list)
    masked_message: str | None = None  # the message as the model saw it, only when masking changed it
    category: str = "answer"  # answer | emergency | boundary | invalid
    notice: str | None = None  # safety boundary or input problem, shown before the answer
    evidence: str | None = None  # the retrieved NIH passage the answer was grounded on
    finished: bool = False
    stats: GenerationStats | None = None

    def markdown(self, show_masked: bool = False) -> str:
        """The reply as one Markdown message: notice, answer, then sources, masking note and disclaimer."""
        head = "\n\n".join(part for part in (self.notice, self.answer or ("…" if not self.finished else "")) if part)
        if self.category in ("emergency", "invalid"):
            return head
        tail = []
        if self.evidence and self.sources:
            tail.append(f"> **From {self.sources[0].title} ({self.sources[0].source}):** {self.evidence}")
        if self.sources:
            links = "; ".join(f"[{s.title}]({s.url}) ({s.source})" for s in self.sources)
            tail.append(f"**Sources:** {links}")
        if self.masked_types:
            note = f"🔒 Personal details were removed before processing: {', '.join(self.masked_types)}."
            if show_masked and self.masked_message:
                note += f"\n\nThe model saw: “{self.masked_message}”"
            tail.append(note)
        tail.append(f"_{DISCLAIMER}_")
        return head + SECTION_BREAK + "\n\n".join(tail)


def answer_from_markdown(message: str) -> str:
    """The answer part of a rendered reply (history holds rendered replies)."""
    return message.split(SECTION_BREAK, 1)[0]


_BLOCK_START = re.compile(rf"\n?\s*(?:{QUESTION_PREFIX.strip()}|{REFERENCE_PREFIX.strip()}|{ANSWER_PREFIX})")
_SENTENCE = re.compile(r"[^.!?]+[.!?]+[\"')\]]*\s*|[^.!?]+$")


def postprocess(text: str, *, finished: bool) -> str:
    """Cut the continuation at a new prompt block, drop repeated sentences and, once finished, a cut-off tail."""
    text = _BLOCK_START.split(text, 1)[0]
    kept, seen = [], set()
    for sentence in _SENTENCE.findall(text):
        key = " ".join(sentence.lower().split())
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(sentence)
    text = "".join(kept).strip()
    if finished and re.search(r"[.!?]", text):
        text = text[: max(text.rfind(c) for c in ".!?") + 1]
    return text


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    model: str = dataclasses.field(default_factory=settings.default_model)
    data: str | None = None  # MedQuAD directory for the retrieval index
    retrieval_k: int = 3
    max_input_chars: int = 2000
    history_turns: int = 3
    context_length: int | None = None  # None: the model's own context


class ChatEngine:
    def __init__(self, causal_lm, index, config: EngineConfig = EngineConfig()):
        self.config = config
        self.generator = StreamingGenerator(causal_lm, config.context_length)
        self.index = index

    @classmethod
    def load(cls, config: EngineConfig = EngineConfig()) -> "ChatEngine":
        from concurrent.futures import ThreadPoolExecutor

        from gpt2chat.masking import get_masker
        from gpt2chat.model import load_preset
        from gpt2chat.retrieval import get_index

        def masker_and_index():
            get_masker()  # build Presidio and spaCy now rather than on the first message
            return get_index(config.data)

        # The masker and the index (built on a first start) load while the model does.
        with ThreadPoolExecutor(max_workers=1) as pool:
            index = pool.submit(masker_and_index)
            causal_lm = load_preset(config.model)
            return cls(causal_lm, index.result(), config)

    def warm_up(self) -> None:
        """Compile every prompt and cache size ahead, then run one message through the whole pipeline."""
        self.generator.warm_up()
        for _ in self.stream("What is glaucoma?", grounded=True, sampling=SamplingConfig(max_new_tokens=2)):
            pass

    def _retrieve(self, masked_question: str) -> list:
        return self.index.search(masked_question, k=self.config.retrieval_k) if self.index else []

    def _history(self, history: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        from gpt2chat.masking import mask

        recent = list(history)[-self.config.history_turns :]
        return [(mask(q).text, answer_from_markdown(a)) for q, a in recent]

    def _prompt_ids(self, question: str, reference: str | None, history: list, max_new_tokens: int) -> list[int]:
        """The longest prompt that fits: drop the oldest turns first, then shorten the reference."""
        budget = self.generator.prompt_budget(max_new_tokens)
        while True:
            ids = self.generator.encode(build_prompt(question, reference=reference, history=history))
            if len(ids) <= budget:
                return ids
            if history:
                history = history[1:]
            elif reference and len(reference) > 80:
                reference = reference_passage(reference, len(reference) // 2)
            else:
                return ids  # the generator keeps the prompt's end, where the question is

    def stream(
        self,
        message: str,
        history: Sequence[tuple[str, str]] = (),
        *,
        grounded: bool = True,
        sampling: SamplingConfig = SamplingConfig(),
    ) -> Iterator[ChatReply]:
        """Yield a growing reply; the last one has ``finished=True``. ``history`` is (user, assistant) pairs."""
        from gpt2chat.masking import mask
        from gpt2chat.safety import assess, check_input

        text, problem = check_input(message, max_chars=self.config.max_input_chars)
        if problem:
            yield ChatReply(category="invalid", notice=problem.reply, finished=True)
            return
        masked = mask(text)
        reply = ChatReply(
            masked_types=sorted({f.entity_type for f in masked.findings}),
            masked_message=masked.text if masked.changed else None,
        )
        verdict = assess(masked.text)
        if verdict.category:
            reply.category = "emergency" if verdict.blocks_answer else "boundary"
            reply.notice = verdict.reply
            if verdict.blocks_answer:
                reply.finished = True
                yield reply
                return
        passages = self._retrieve(masked.text) if grounded else []
        reply.sources = _sources(passages)
        reference = reference_passage(passages[0].answer) if passages else None
        reply.evidence = reference
        prompt_ids = self._prompt_ids(masked.text, reference, self._history(history), sampling.max_new_tokens)
        reply.stats = GenerationStats()
        yield reply
        generated: list[int] = []
        for token in self.generator.stream_ids(prompt_ids, sampling, reply.stats):
            generated.append(token)
            text = self.generator.decode(generated)
            if _BLOCK_START.search(text):
                break  # the model started a new Question/Reference block: the answer is over
            reply.answer = postprocess(text, finished=False)
            yield reply
        reply.answer = postprocess(self.generator.decode(generated), finished=True)
        if not reply.answer:
            reply.answer = (
                "I could not produce an answer to that. The sources below may help."
                if reply.sources else "I could not produce an answer to that. Please rephrase your question."
            )
        reply.finished = True
        yield reply

    def reply(self, message: str, history: Sequence[tuple[str, str]] = (), **options) -> ChatReply:
        last = ChatReply()
        for last in self.stream(message, history, **options):
            pass
        return last


def _sources(passages) -> list[Source]:
    seen, sources = set(), []
    for passage in passages:
        if passage.url and passage.url not in seen:
            seen.add(passage.url)
            sources.append(Source(title=passage.focus or passage.question, url=passage.url, source=passage.source))
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.engine", description=__doc__.split("\n")[0])
    parser.add_argument("question")
    parser.add_argument("--model", default=settings.default_model(), help="preset name or directory")
    parser.add_argument("--data", help="MedQuAD directory for the retrieval index")
    parser.add_argument("--no-grounding", action="store_true", help="answer without a retrieved passage")
    parser.add_argument("--temperature", type=float, default=SamplingConfig.temperature)
    parser.add_argument("--max-new-tokens", type=int, default=SamplingConfig.max_new_tokens)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    from gpt2chat.model import ModelUnavailable

    try:
        engine = ChatEngine.load(EngineConfig(model=args.model, data=args.data))
    except (ModelUnavailable, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    reply = engine.reply(args.question, grounded=not args.no_grounding, sampling=sampling)
    print(reply.markdown())
    if reply.stats and reply.stats.new_tokens:
        print(f"\n[{reply.stats.new_tokens} tokens, first after {reply.stats.seconds_to_first_token:.2f} s, "
              f"{reply.stats.tokens_per_second:.1f} tokens/s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
