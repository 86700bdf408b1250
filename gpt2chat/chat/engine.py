"""The chat engine: one object that the UI, the API, the benchmarks and the reports all use.

    message → check input → mask PII → safety → retrieve NIH passages → prompt (history within the context
    budget, reference passage when grounded) → stream tokens → verify every sentence against the passages
    → structured reply (answer, how it was made, citations)

Nothing the user reads is unsupported: each sentence the model writes is shown only once it is complete and the
cited passage supports it (``gpt2chat.chat.grounding.verify``). When too little of the model's text survives, or there
is no model yet, or the model has not passed its quality gate, the answer is a question-focused extract of the
NIH passage, labelled as such. Rendering is the UI's job (``gpt2chat.serving.ui.render_reply``).

One factory builds it: ``ChatEngine.build(config, causal_lm=None, index=None, masker=None, safety=None)`` loads
whatever is not passed in (the masker and the index on a thread while the model loads). Raw messages are never
logged or written anywhere: only the masked text goes past the masker.

    python -m gpt2chat.engine "How is glaucoma treated?" [--model DIR] [--no-grounding]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import threading
from typing import Iterator, Sequence

from gpt2chat import settings
from gpt2chat.chat.copybias import CopyBias, gpt2_opens_with
from gpt2chat.chat.grounding import answer_openers, extractive_answer, is_degenerate, split_sentences, verify
from gpt2chat.modeling.generation import GenerationStats, SamplingConfig, StreamingGenerator, TokenStreamer
from gpt2chat.modeling.prompt import answer_ends, build_prompt, clean_answer, reference_passage

log = logging.getLogger(__name__)

MODEL_ANSWER, EXTRACT_ANSWER, NO_ANSWER = "model", "extract", "none"
EXTRACT_NOTICE = "Summary of the NIH page"
NO_ANSWER_TEXT = "I could not find an NIH answer to that question. Please rephrase it, or search MedlinePlus."


@dataclasses.dataclass(frozen=True)
class Source:
    title: str
    url: str
    source: str


@dataclasses.dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation, as plain text: the user's message and the answer it got."""

    question: str
    answer: str


@dataclasses.dataclass
class ChatReply:
    answer: str = ""  # what the user reads: supported model sentences, or the extract, or empty
    answer_kind: str = NO_ANSWER  # MODEL_ANSWER | EXTRACT_ANSWER | NO_ANSWER
    sources: list[Source] = dataclasses.field(default_factory=list)
    masked_types: list[str] = dataclasses.field(default_factory=list)
    masked_message: str | None = None  # the message as the model saw it, only when masking changed it
    category: str = "answer"  # answer | emergency | boundary | invalid | no_answer
    notice: str | None = None  # safety boundary or input problem, shown before the answer
    evidence: str | None = None  # the retrieved NIH passage the answer was grounded on
    search_url: str | None = None  # a MedlinePlus search for what was asked, to offer when there is no NIH answer
    model_text: str | None = None  # the model's own cleaned text, for reports; never shown to users
    support_rate: float | None = None  # share of the model's sentences the passages support
    finished: bool = False
    stats: GenerationStats | None = None


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    model: str | None = dataclasses.field(default_factory=settings.default_model)  # None: extracts only
    data: str | None = None  # MedQuAD directory for the retrieval index
    index_dir: str | None = None  # a built retrieval index to load instead (the Space bundle's index/)
    retrieval_k: int = 3
    max_input_chars: int = 2000
    history_turns: int = 3
    context_length: int | None = None  # None: the model's own context
    # Below this share of supported sentences the model's answer is replaced by the extract: most of what it
    # wrote being unsupported means its kept sentences are more likely chance copies than an answer.
    min_support_rate: float = 0.5
    # A model serves its own text only after this share of the gate questions got a shown model answer.
    gate_pass_rate: float = 0.5
    # Copy-biased decoding (gpt2chat.chat.copybias) when the passage is in the prompt: "hard" lets the model only
    # continue spans of the passage or start one of its sentences, "soft" adds copy_strength to those tokens'
    # logits, "off" decodes freely. Measured on 30 test questions with the quick-start model
    # (benchmarks/grounded_decoding.py): support 0% / 18% / 97% and fallback 100% / 73% / 7% for off / soft
    # (strength 6) / hard.
    copy_mode: str = "hard"
    copy_strength: float = 5.0
    # Hard mode ends the answer after this many copied sentences: three is the length of the training targets.
    copy_max_sentences: int = 3
    # Serve the model's OpenVINO export (gpt2chat.modeling.export) when one made from its current weights sits
    # beside it: int8 `base` decoded 110.6 tokens/s against Keras's 24.5 on 2 quiet cores (README, Performance).
    # False: always Keras.
    use_export: bool = True


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    """Whether the model's own text is shown, and the measurement that decided it."""

    loaded: bool = False
    trusted: bool = False
    gate_pass_rate: float | None = None
    detail: str = "no model loaded: answers are summaries of the NIH pages"


class ChatEngine:
    def __init__(self, causal_lm, index, *, masker, safety, config: EngineConfig | None = None,
                 generator: TokenStreamer | None = None):
        """Collaborators are passed in; ``ChatEngine.build`` loads the defaults. ``causal_lm`` may be None.
        ``generator``: a ready one (e.g. ``gpt2chat.modeling.export.load_exported_generator``) instead of Keras's."""
        config = self.config = config or EngineConfig()  # built here, not at import: it reads $GPT2CHAT_MODEL
        self.index = index
        self.masker = masker
        self.safety = safety
        self.generator: TokenStreamer | None = generator
        self.status = ModelStatus()
        self._swap_lock = threading.Lock()
        if generator is None and causal_lm is not None:
            self.generator = StreamingGenerator(causal_lm, config.context_length)
        if self.generator is not None:
            self.status = ModelStatus(loaded=True, trusted=True, detail="model loaded, not yet gated")

    @classmethod
    def build(cls, config: EngineConfig | None = None, *, causal_lm=None, index=None, masker=None,
              safety=None) -> "ChatEngine":
        """The composition root: builds every collaborator not passed in (masker and index on a thread while the
        model loads) and passes them to the engine. ``config.model=None`` and no ``causal_lm``: extracts only."""
        from concurrent.futures import ThreadPoolExecutor

        from gpt2chat.guard.emergency import default_detector
        from gpt2chat.guard.masking import PIIMasker
        from gpt2chat.guard.safety import SafetyPolicy

        config = config or EngineConfig()

        def masker_and_index():
            from gpt2chat.search.retrieval import RetrievalIndex

            loaded_masker = masker or PIIMasker()  # Presidio and spaCy now rather than on the first message
            # The emergency classifier trains here (1.0-1.5 s), not on the first message.
            loaded_safety = safety or SafetyPolicy(default_detector())
            if index is not None:
                return loaded_masker, loaded_safety, index
            if config.index_dir:
                return loaded_masker, loaded_safety, RetrievalIndex.load(config.index_dir)
            return loaded_masker, loaded_safety, RetrievalIndex.load_or_build(config.data)

        generator = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            collaborators = pool.submit(masker_and_index)
            if causal_lm is None and config.model:
                from gpt2chat.modeling.model import load_preset

                generator = exported_generator(config.model, config.context_length) if config.use_export else None
                if generator is None:
                    causal_lm = load_preset(config.model)
            loaded_masker, loaded_safety, loaded_index = collaborators.result()
        return cls(causal_lm, loaded_index, masker=loaded_masker, safety=loaded_safety, config=config,
                   generator=generator)

    # ------------------------------------------------------------------------------------------ the model
    def warm_up(self) -> None:
        """Compile every prompt and cache size ahead, then run one message through the whole pipeline."""
        if self.generator is not None:
            self.generator.warm_up()
        self.reply("What is glaucoma?", sampling=SamplingConfig(max_new_tokens=2))

    def gate(self, questions: Sequence[str] | None = None) -> ModelStatus:
        """Measure whether the model's own text may be shown: the share of ``questions`` (default: seeded
        questions from the index) whose reply keeps model text after the support check."""
        if self.generator is None:
            return self.status
        questions = list(questions or gate_questions())
        shown = 0
        for question in questions:
            passages, _ = self._passages(question)
            *_, reply = self._answer_stream(question, passages, [], True, SamplingConfig(temperature=0.0))
            shown += reply.answer_kind == MODEL_ANSWER
        rate = shown / len(questions) if questions else 0.0
        trusted = rate >= self.config.gate_pass_rate
        self.status = ModelStatus(
            loaded=True, trusted=trusted, gate_pass_rate=rate,
            detail=(f"model text shown: {shown}/{len(questions)} gate questions passed the support check"
                    if trusted else f"model text withheld: only {shown}/{len(questions)} gate questions passed the "
                                    "support check, so answers are summaries of the NIH pages"))
        log.info("quality gate: %s", self.status.detail)
        return self.status

    def use_model(self, causal_lm, generator: TokenStreamer | None = None) -> ModelStatus:
        """Swap in a newly trained model without a restart: compile it and gate it before any user sees it.
        ``generator``: one already built for it (its OpenVINO export), else Keras serves ``causal_lm``."""
        generator = generator or StreamingGenerator(causal_lm, self.config.context_length)
        generator.warm_up()
        with self._swap_lock:
            previous, self.generator = self.generator, generator
            status = self.gate()
            if not status.trusted and previous is None:
                self.generator = None  # an untrusted model is not worth its generation time
        return status

    # ------------------------------------------------------------------------------------------ one message
    def _passages(self, masked_question: str, masked_history: Sequence[str] = ()) -> tuple[list, str | None]:
        """The passages to cite for a masked message, and a MedlinePlus search for it. Each core question of the
        message gets its own passage (so a reply may cite several pages); none at all when MedQuAD has no answer
        (dosing, a drug, another language), rather than a loosely related page. ``masked_history`` is the user's
        earlier masked messages, oldest first: a follow-up ("and how is it treated?") keeps their focus."""
        if not self.index:
            return [], None
        result = self.index.retrieve(masked_question, masked_history, k=self.config.retrieval_k)
        return result.passages(self.config.retrieval_k), result.medlineplus_url

    def _history(self, history: Sequence[Turn | tuple[str, str]]) -> list[tuple[str, str]]:
        """The recent turns the prompt may use, masked. Oversized or rejected messages are dropped before any
        processing, so one huge message cannot slow every later turn."""
        turns = []
        for turn in list(history)[-self.config.history_turns:]:
            question, answer = (turn.question, turn.answer) if isinstance(turn, Turn) else turn
            if len(question) > self.config.max_input_chars:
                continue
            text, problem = self.safety.check_input(question, self.config.max_input_chars)
            if problem is None:
                turns.append((self.masker.mask(text).text, answer[: self.config.max_input_chars]))
        return turns

    def _prompt_ids(self, question: str, reference: str | None, history: list,
                    max_new_tokens: int) -> tuple[list[int], str | None]:
        """The longest prompt that fits (drop the oldest turns first, then shorten the reference), and the
        reference as it stands in that prompt."""
        budget = self.generator.prompt_budget(max_new_tokens)
        while True:
            ids = self.generator.encode(build_prompt(question, reference=reference, history=history))
            if len(ids) <= budget:
                return ids, reference
            if history:
                history = history[1:]
            elif reference and len(reference) > 80:
                reference = reference_passage(reference, len(reference) // 2)
            else:
                return ids, reference  # the generator keeps the prompt's end, where the question is

    def stream(
        self,
        message: str,
        history: Sequence[Turn | tuple[str, str]] = (),
        *,
        grounded: bool = True,
        sampling: SamplingConfig = SamplingConfig(),
    ) -> Iterator[ChatReply]:
        """Yield a growing reply; the last one has ``finished=True``. ``history`` is earlier turns, oldest first.
        ``grounded=False`` leaves the passage out of the prompt; the answer is still checked against it."""
        text, problem = self.safety.check_input(message, self.config.max_input_chars)
        if problem:
            yield ChatReply(category="invalid", notice=problem.reply, finished=True)
            return
        masked = self.masker.mask(text)
        reply_fields = dict(masked_types=sorted({f.entity_type for f in masked.findings}),
                            masked_message=masked.text if masked.changed else None)
        verdict = self.safety.assess(masked.text)
        if verdict.category and verdict.blocks_answer:
            yield ChatReply(category="emergency", notice=verdict.reply, finished=True, **reply_fields)
            return
        if verdict.category:
            reply_fields.update(category="boundary", notice=verdict.reply)
        turns = self._history(history)
        passages, reply_fields["search_url"] = self._passages(masked.text, [question for question, _ in turns])
        yield from self._answer_stream(masked.text, passages, turns, grounded, sampling, **reply_fields)

    def _answer_stream(self, question: str, passages: list, history: list, grounded: bool,
                       sampling: SamplingConfig, **reply_fields) -> Iterator[ChatReply]:
        """Growing replies to a masked question over its retrieved passages."""
        reply = ChatReply(**reply_fields)
        if not passages:
            reply.category = "no_answer" if reply.category == "answer" else reply.category
            reply.answer, reply.finished = NO_ANSWER_TEXT, True
            yield reply
            return
        reply.sources = _sources(passages)
        reply.evidence = reference_passage(passages[0].answer)
        # Every cited passage may support a sentence (a message with several questions cites one per question).
        texts = [reply.evidence, *(reference_passage(p.answer) for p in passages[1:])]
        generator = self.generator if self.status.trusted else None
        if generator is not None:
            reference = reply.evidence if grounded else None
            prompt_ids, reference = self._prompt_ids(question, reference, history, sampling.max_new_tokens)
            reply.stats = GenerationStats()
            yield reply
            generated: list[int] = []
            shown = 0
            processor = self._copy_bias(generator, question, reference)
            for token in generator.stream_ids(prompt_ids, sampling, reply.stats, logits_processor=processor):
                generated.append(token)
                draft = generator.decode(generated)
                if answer_ends(draft):
                    break  # the model started a new Question/Reference block: the answer is over
                # Only complete sentences are checked and shown: the last one may still be growing.
                complete = split_sentences(clean_answer(draft, finished=False))[:-1]
                if len(complete) > shown:
                    shown = len(complete)
                    checked = verify(" ".join(complete), texts)
                    if checked.text != reply.answer:
                        reply.answer, reply.answer_kind = checked.text, MODEL_ANSWER
                        yield reply
            reply.model_text = clean_answer(generator.decode(generated), finished=True)
            checked = verify(reply.model_text, texts)
            reply.support_rate = checked.support_rate
            if checked.support_rate >= self.config.min_support_rate and not is_degenerate(checked.text):
                reply.answer, reply.answer_kind = checked.text, MODEL_ANSWER
                reply.finished = True
                yield reply
                return
        extract = extractive_answer(question, texts)
        reply.answer, reply.answer_kind = extract.text, EXTRACT_ANSWER if extract.text else NO_ANSWER
        reply.finished = True
        yield reply

    def _copy_bias(self, generator: TokenStreamer, question: str, reference: str | None) -> CopyBias | None:
        if not reference or self.config.copy_mode == "off":
            return None
        # The answer follows "Answer:" after a space, so the passage is encoded as the answer would spell it. It
        # opens on the sentence the question-focused extract ranks first (grounding.answer_openers), never on a side
        # remark; the model decides how far to go on from there.
        return CopyBias(generator.encode(" " + reference), strength=self.config.copy_strength,
                        constrain=self.config.copy_mode == "hard", max_sentences=self.config.copy_max_sentences,
                        opens_answer=gpt2_opens_with(answer_openers(question, reference)))

    def reply(self, message: str, history: Sequence[Turn | tuple[str, str]] = (), **options) -> ChatReply:
        last = ChatReply()
        for last in self.stream(message, history, **options):
            pass
        return last


def gate_questions() -> list[str]:
    lines = (settings.PACKAGE_DIR / "resources" / "gate_questions.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _sources(passages) -> list[Source]:
    seen, sources = set(), []
    for passage in passages:
        if passage.url and passage.url not in seen:
            seen.add(passage.url)
            sources.append(Source(title=passage.focus or passage.question, url=passage.url, source=passage.source))
    return sources


def exported_generator(model_dir: str, context_length: int | None) -> TokenStreamer | None:
    """The OpenVINO generator of ``model_dir``'s export when it has a current one; None (serve with Keras) when it
    has none or it cannot be loaded, which is logged rather than raised: Keras can still serve the preset."""
    from gpt2chat.modeling.export import ExportError, serving_generator

    try:
        generator = serving_generator(model_dir, context_length)
    except ExportError as error:
        log.warning("serving with Keras: %s", error)
        return None
    if generator is not None:
        log.info("serving the OpenVINO export of %s", model_dir)
    return generator


def plain_text(reply: ChatReply) -> str:
    """The reply for a terminal: notice, answer (with how it was made), sources."""
    lines = [part for part in (reply.notice, reply.answer) if part]
    if reply.answer_kind == EXTRACT_ANSWER:
        lines.insert(len(lines) - 1, f"[{EXTRACT_NOTICE}]")
    lines += [f"- {s.title} ({s.source}): {s.url}" for s in reply.sources]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.engine", description=__doc__.split("\n")[0])
    parser.add_argument("question")
    parser.add_argument("--model", default=settings.default_model(), help="preset name or directory")
    parser.add_argument("--data", help="MedQuAD directory for the retrieval index")
    parser.add_argument("--no-grounding", action="store_true", help="leave the retrieved passage out of the prompt")
    parser.add_argument("--no-gate", action="store_true", help="show model text without the quality gate")
    parser.add_argument("--temperature", type=float, default=SamplingConfig.temperature)
    parser.add_argument("--max-new-tokens", type=int, default=SamplingConfig.max_new_tokens)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    engine = ChatEngine.build(EngineConfig(model=args.model, data=args.data))
    if not args.no_gate:
        print(engine.gate().detail, file=sys.stderr)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    reply = engine.reply(args.question, grounded=not args.no_grounding, sampling=sampling)
    print(plain_text(reply))
    if reply.stats and reply.stats.new_tokens:
        print(f"\n[{reply.stats.new_tokens} tokens, first after {reply.stats.seconds_to_first_token:.2f} s, "
              f"{reply.stats.tokens_per_second:.1f} tokens/s; support rate {reply.support_rate:.0%}]",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
