"""The chat engine: one object that the UI, the API, the benchmarks and the reports all use.

    message → emergencies (whole message, last turns) → check input → mask PII → safety → retrieve NIH passages → prompt (history within the context
    budget, reference passage when grounded) → stream tokens → verify every sentence against the passages
    → structured reply (answer, how it was made, citations)

Nothing the user reads is unsupported: each sentence the model writes is shown only once it is complete and the
cited passage supports it (``gpt2chat.chat.grounding.verify``). When too little of the model's text survives, or there
is no model yet, or the model has not passed its quality gate, the answer is a question-focused extract of the
NIH passage, labelled as such. Rendering is the UI's job (``gpt2chat.serving.ui.render_reply``).

One factory builds it: ``ChatEngine.build(config, causal_lm=None, index=None, masker=None, safety=None)`` loads
whatever is not passed in (the masker and the index on a thread while the model loads). Raw messages are never
logged or written anywhere: only the masked text goes past the masker.

    python -m gpt2chat.engine "How is glaucoma treated?" [--model DIR | --no-model] [--no-grounding]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import threading
from typing import TYPE_CHECKING, Iterator, Sequence

from gpt2chat import settings
from gpt2chat.chat.copybias import CopyBias, gpt2_opens_with
from gpt2chat.chat.gate import GateResult, compare_answers, gate_pairs
from gpt2chat.chat.grounding import (ExtractConfig, answer_candidates, answer_openers, choose_sentences,
                                     extractive_answer, is_degenerate, split_sentences, verify)
from gpt2chat.chat.kinds import AnswerKind, Category
from gpt2chat.corpus.sites import current_url, is_archived, site_name
from gpt2chat.modeling.generation import GenerationStats, SamplingConfig, StreamingGenerator, TokenStreamer
from gpt2chat.modeling.prompt import answer_ends, build_prompt, clean_answer, reference_passage
from gpt2chat.modeling.selection import SentenceScorer, section_starts

if TYPE_CHECKING:
    from gpt2chat.search.ranking import RetrievalResult

log = logging.getLogger(__name__)

EXTRACT_NOTICE = "Summary of the NIH page"
NO_ANSWER_TEXT = "I could not find an NIH answer to that question. Please rephrase it, or search MedlinePlus."
# What a question about medicines asks (LiveQA's types and MedQuAD's medicine types), in the reply's words; names are
# joined by "or"; any other type is "questions about" them.
MEDICINE_QUESTIONS = {
    "information": "what {} is", "side effects": "the side effects of {}", "dose": "the dose of {}",
    "usage": "how to take {}", "indication": "the uses of {}", "contraindication": "who should not take {}",
    "interactions with medications": "what can be taken with {}",
    "forget a dose": "what to do after a missed dose of {}",
    "storage and disposal": "how to store or throw away {}", "precautions": "the precautions to take with {}",
    "dietary": "what to eat or drink with {}", "interactions with foods": "what to eat or drink with {}",
    "interactions with herbs and supplements": "which supplements can be taken with {}",
    "brand names": "the brand names of {}", "brand names of combination products": "the brand names of {}",
    "emergency or overdose": "an overdose of {}", "how effective is it": "how well {} works",
    "how does it work": "how {} works", "important warning": "the warnings about {}",
    "severe reaction": "severe reactions to {}", "why get vaccinated": "why to get {}"}
MEDLINEPLUS_DRUGS = "https://medlineplus.gov/druginformation.html"


def no_answer_text(result: RetrievalResult | None) -> str:
    """The reply when no NIH page answers: for a medicine's question, why (MedQuAD publishes its medicine pages
    without answers) and where to read, rather than "rephrase it", which cannot help."""
    asked = result.medicine_question if result else None
    if asked is None:
        return NO_ANSWER_TEXT
    medicines, question_type = asked
    names = " or ".join(medicines[:3]) + (" (and others)" if len(medicines) > 3 else "")
    question = MEDICINE_QUESTIONS.get(question_type, "questions about {}").format(names)
    return (f"My NIH sources have no answer on {question}: the medicine pages they come from are published without "
            f"answers. MedlinePlus has a page on each medicine: {MEDLINEPLUS_DRUGS}")


@dataclasses.dataclass(frozen=True)
class Source:
    title: str
    url: str  # where the page is now (gpt2chat.corpus.sites.current_url)
    source: str
    # The page's text the UI folds under the answer: the sections the answer quotes from it, whole, in the order it
    # quotes them; for a page it does not quote, the section retrieval cited.
    text: str = ""
    # Whether the answer quotes this page: set by the engine from the sections its sentences came from (the
    # extract's, or the supporting passages of the model's verified sentences), never re-derived from the text.
    quoted: bool = False

    @property
    def label(self) -> str:
        """How the page is named to a reader: "Gout — MedlinePlus", "Glaucoma — NIHSeniorHealth (archived)"."""
        label = f"{self.title} — {site_name(self.source)}"
        return label + " (archived)" if is_archived(self.url) else label


@dataclasses.dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation, as plain text: the user's message and the answer it got."""

    question: str
    answer: str


@dataclasses.dataclass
class ChatReply:
    answer: str = ""  # what the user reads: supported model sentences, or the extract, or empty
    answer_kind: AnswerKind = AnswerKind.NONE
    sources: list[Source] = dataclasses.field(default_factory=list)
    masked_types: list[str] = dataclasses.field(default_factory=list)
    masked_message: str | None = None  # the message as the model saw it, only when masking changed it
    category: Category = Category.ANSWER
    notice: str | None = None  # safety boundary or input problem, shown before the answer
    evidence: str | None = None  # the retrieved NIH passage the answer was grounded on
    search_url: str | None = None  # a MedlinePlus search for what was asked, to offer when there is no NIH answer
    model_text: str | None = None  # the model's own cleaned text, for reports; never shown to users
    support_rate: float | None = None  # share of the model's sentences the passages support
    finished: bool = False
    stats: GenerationStats | None = None

    @property
    def quoted_sources(self) -> list[Source]:
        """The pages the answer quotes ("Sources"), in retrieval order."""
        return [s for s in self.sources if s.quoted]

    @property
    def related_sources(self) -> list[Source]:
        """The other retrieved pages ("Related pages"), in retrieval order."""
        return [s for s in self.sources if not s.quoted]


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
    # How the model answers: "select" — the GPT-2 scores every candidate sentence of the cited pages and the answer
    # is the best of them (gpt2chat.modeling.selection); "generate" — it writes the answer token by token, copying
    # from the top passage (copy_mode below). Either way the quality gate serves it only when its answers beat the
    # extract's on held-out questions.
    answer_mode: str = "select"
    # Candidate sentences per page section for the model's selection (gpt2chat.modeling.selection).
    section_sentences: int = 8
    # What the extract is drawn from: "best" — the whole section retrieval ranked best for each question of the
    # message; "cited" — every cited section; "page" — their whole pages, the cited sections preferred
    # (ExtractConfig.cited_weight). On 200 validation questions through the full pipeline (python -m
    # gpt2chat.answer_quality --calibrate-extract), ROUGE-2 against the NIH answer: best sections 50.6
    # (cut to 600 characters 49.8), every cited section 42.1 (cut: 42.1, the extract before), whole pages
    # 27.2 / 34.8 / 39.5 (cited_weight 0 / 0.5 / 1).
    extract_scope: str = "best"
    extract: ExtractConfig = ExtractConfig()
    # Selection: after the best sentence, every candidate whose score reaches this (at most answer_max_sentences,
    # answer_max_chars): the model decides the length. A score is the log of how much more the sentence's question
    # type agrees with the question's than the page's average sentence's, so 0 keeps what is more on-type than the
    # page.
    select_threshold: float = 0.0
    answer_max_sentences: int = 4
    answer_max_chars: int = 600
    # The quality gate asks this many validation questions (never trained on, never in the test split).
    gate_questions: int = 40
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
    """Whether the model's own text is shown, and the measurement that decided it (``gpt2chat.chat.gate``)."""

    loaded: bool = False
    trusted: bool = False
    gate: GateResult | None = None
    detail: str = "no model loaded: answers are summaries of the NIH pages"


@dataclasses.dataclass(frozen=True)
class AnswerModel:
    """What a model answers with: its sentence scorer (select mode) or its token generator (generate mode)."""

    generator: TokenStreamer | None = None
    scorer: SentenceScorer | None = None

    @classmethod
    def of(cls, causal_lm, config: EngineConfig, generator: TokenStreamer | None = None) -> "AnswerModel":
        """The parts ``config.answer_mode`` uses: the scorer needs the Keras model; the generator may be the
        model's OpenVINO export."""
        if config.answer_mode == "select":
            return cls(scorer=SentenceScorer(causal_lm))
        return cls(generator=generator or StreamingGenerator(causal_lm, config.context_length))

    def warm_up(self) -> None:
        for part in (self.generator, self.scorer):
            if part is not None:
                part.warm_up()


class ChatEngine:
    def __init__(self, causal_lm, index, *, masker, safety, config: EngineConfig | None = None,
                 generator: TokenStreamer | None = None):
        """Collaborators are passed in; ``ChatEngine.build`` loads the defaults. ``causal_lm`` may be None.
        ``generator``: a ready one (e.g. ``gpt2chat.modeling.export.load_exported_generator``) instead of Keras's.
        A model given here is loaded but not served until ``gate`` (or ``serve_ungated``) says so."""
        config = self.config = config or EngineConfig()  # built here, not at import: it reads $GPT2CHAT_MODEL
        if config.answer_mode not in ("select", "generate"):
            raise ValueError(f"answer_mode must be 'select' or 'generate', not {config.answer_mode!r}")
        self.index = index
        self.masker = masker
        self.safety = safety
        self.model: AnswerModel | None = None
        self.status = ModelStatus()
        self._swap_lock = threading.Lock()
        if causal_lm is not None or generator is not None:
            self.model = AnswerModel.of(causal_lm, config, generator)
            self.status = ModelStatus(loaded=True, detail="model loaded, not yet gated: answers are summaries of "
                                                          "the NIH pages until it passes its quality gate")

    @property
    def generator(self) -> TokenStreamer | None:
        return self.model.generator if self.model else None

    @classmethod
    def build(cls, config: EngineConfig | None = None, *, causal_lm=None, index=None, masker=None,
              safety=None) -> "ChatEngine":
        """The composition root: builds every collaborator not passed in (masker and index on a thread while the
        model loads) and passes them to the engine. ``config.model=None`` and no ``causal_lm``: extracts only."""
        from concurrent.futures import ThreadPoolExecutor

        from gpt2chat.guard.emergency import build_detector
        from gpt2chat.guard.masking import PIIMasker
        from gpt2chat.guard.safety import SafetyPolicy

        config = config or EngineConfig()

        def masker_and_index():
            from gpt2chat.search.retrieval import RetrievalIndex

            loaded_masker = masker or PIIMasker()  # Presidio and spaCy now rather than on the first message
            # The emergency classifier trains here (1.0-1.5 s), not on the first message.
            loaded_safety = safety or SafetyPolicy(build_detector())
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

                if config.answer_mode == "generate" and config.use_export:
                    generator = exported_generator(config.model, config.context_length)
                if generator is None:
                    causal_lm = load_preset(config.model)
            loaded_masker, loaded_safety, loaded_index = collaborators.result()
        return cls(causal_lm, loaded_index, masker=loaded_masker, safety=loaded_safety, config=config,
                   generator=generator)

    # ------------------------------------------------------------------------------------------ the model
    def warm_up(self) -> None:
        """Compile every prompt and cache size ahead, then run one message through the whole pipeline."""
        if self.model is not None:
            self.model.warm_up()
        self.reply("What is glaucoma?", sampling=SamplingConfig(max_new_tokens=2))

    @contextlib.contextmanager
    def serving(self, model: AnswerModel | None) -> Iterator["ChatEngine"]:
        """Answer with ``model`` (None: the extract) inside the block, gate or not, then restore what was served:
        for reports that set several models in the same pipeline. No swap happens meanwhile."""
        with self._swap_lock:
            saved = self.model, self.status
            self.model = model
            self.status = ModelStatus(loaded=model is not None, trusted=model is not None, detail="under evaluation")
            try:
                yield self
            finally:
                self.model, self.status = saved

    def serve_ungated(self) -> ModelStatus:
        """Serve the loaded model's text without its quality gate (``--no-gate``: for inspecting a model)."""
        if self.model is not None:
            self.status = ModelStatus(loaded=True, trusted=True,
                                      detail="model text shown without its quality gate (--no-gate)")
        return self.status

    def gate(self, pairs: Sequence | None = None) -> ModelStatus:
        """Gate the loaded model (``use_model``'s gate, for a model given at construction)."""
        if self.model is None:
            return self.status
        return self._gate_and_adopt(self.model, pairs)

    def use_model(self, causal_lm, generator: TokenStreamer | None = None, pairs: Sequence | None = None) -> ModelStatus:
        """Swap in a newly trained model without a restart: compile it and gate it before any user sees it.
        ``generator``: one already built for it (its OpenVINO export), else Keras serves ``causal_lm``."""
        return self.adopt(AnswerModel.of(causal_lm, self.config, generator), pairs)

    def adopt(self, model: AnswerModel, pairs: Sequence | None = None) -> ModelStatus:
        """Warm ``model`` up and serve it if it passes its gate (``_gate_and_adopt``)."""
        model.warm_up()
        return self._gate_and_adopt(model, pairs)

    def measure(self, model: AnswerModel, pairs: Sequence | None = None) -> GateResult:
        """``model``'s shown answers against the extract the engine shows without it, on held-out validation pairs
        (default: ``gpt2chat.chat.gate.gate_pairs`` of the index: never trained on, never in the test split),
        both scored against the pairs' NIH answers (``compare_answers``)."""
        pairs = list(pairs) if pairs is not None else gate_pairs(self.index, self.config.gate_questions)
        extracts, answers = [], []
        for pair in pairs:
            passages, _ = self._passages(pair.question)
            extracts.append(self._final(pair.question, passages, None))
            answers.append(self._final(pair.question, passages, model))
        return compare_answers(pairs, answers, extracts, model_kind=AnswerKind.MODEL)

    def _gate_and_adopt(self, model: AnswerModel, pairs: Sequence | None) -> ModelStatus:
        """The one path by which a model's text reaches users, at start or swapped in later: it is served only
        once its gate has passed; a model that loses its gate is dropped (not worth its time), and a served model
        that passed earlier stays served when a newer one loses."""
        with self._swap_lock:
            result = self.measure(model, pairs)
            if result.passed:
                self.model = model
                self.status = ModelStatus(loaded=True, trusted=True, gate=result, detail=result.detail)
            elif self.status.trusted and self.model is not model:
                self.status = dataclasses.replace(self.status, detail=f"{self.status.detail} (a newer model was "
                                                                      f"withheld: {result.detail})")
            else:
                self.model = None
                self.status = ModelStatus(loaded=True, trusted=False, gate=result, detail=result.detail)
        log.info("quality gate: %s", result.detail)
        return self.status

    def _passages(self, masked_question: str,
                  masked_history: Sequence[str] = ()) -> tuple[list, RetrievalResult | None]:
        """The passages to cite for a masked message, and what retrieval made of it. Each core question of the
        message gets its own passage first (so a reply may cite several pages; ``Passage.question_best`` marks
        them), then the next best of each in turn; none at all when MedQuAD has no answer
        (dosing, a drug, another language), rather than a loosely related page. ``masked_history`` is the user's
        earlier masked messages, oldest first: a follow-up ("and how is it treated?") keeps their focus."""
        if not self.index:
            return [], None
        result = self.index.retrieve(masked_question, masked_history, k=self.config.retrieval_k)
        best = {q.passages[0].pair_id for q in result.questions if q.passages}
        passages = result.passages(self.config.retrieval_k)
        return [dataclasses.replace(p, question_best=p.pair_id in best) for p in passages], result

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

    @staticmethod
    def _prompt_ids(generator: TokenStreamer, question: str, reference: str | None, history: list,
                    max_new_tokens: int) -> tuple[list[int], str | None]:
        """The longest prompt that fits (drop the oldest turns first, then shorten the reference), and the
        reference as it stands in that prompt."""
        budget = generator.prompt_budget(max_new_tokens)
        while True:
            ids = generator.encode(build_prompt(question, reference=reference, history=history))
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
        ``grounded=False`` leaves the passage out of a generating model's prompt; the answer is still checked."""
        # Emergencies first: the whole message (any length or language) and the last turns read together.
        earlier = [turn.question if isinstance(turn, Turn) else turn[0] for turn in history]
        urgent = self.safety.emergency(message, earlier, mask=lambda text: self.masker.mask(text).text)
        if urgent:
            yield ChatReply(category=Category.EMERGENCY, notice=urgent.reply, finished=True)
            return
        text, problem = self.safety.check_input(message, self.config.max_input_chars)
        if problem:
            yield ChatReply(category=Category.INVALID, notice=problem.reply, finished=True)
            return
        masked = self.masker.mask(text)
        reply_fields = dict(masked_types=sorted({f.entity_type for f in masked.findings}),
                            masked_message=masked.text if masked.changed else None)
        verdict = self.safety.assess(masked.text)
        if verdict.category and verdict.blocks_answer:
            yield ChatReply(category=Category.EMERGENCY, notice=verdict.reply, finished=True, **reply_fields)
            return
        if verdict.category:
            reply_fields.update(category=Category.BOUNDARY, notice=verdict.reply)
        turns = self._history(history)
        passages, result = self._passages(masked.text, [question for question, _ in turns])
        reply_fields["search_url"] = result.medlineplus_url if result else None
        served = self.model if self.status.trusted else None
        yield from self._answer_stream(masked.text, passages, turns, grounded, sampling, served,
                                       no_answer=no_answer_text(result), **reply_fields)

    def _final(self, question: str, passages: list, model: AnswerModel | None) -> ChatReply:
        """The finished reply to a masked question over its passages: ``model``'s answer, or the extract (None)."""
        *_, reply = self._answer_stream(question, passages, [], True, SamplingConfig(temperature=0.0), model)
        return reply

    def answer_from_pages(self, question: str, pages: list[list], model: AnswerModel | None,
                          cited: list | None = None) -> ChatReply:
        """The finished reply to ``question`` drawn from the given pages (lists of passages, in page order) rather
        than from retrieval, ``cited`` (default: every section of the pages, each as if it answered a question of
        the message) standing for what retrieval cited: how the reports set the model and the extract on the same
        pages."""
        cited = cited or [dataclasses.replace(s, question_best=True) for page in pages for s in page]
        *_, reply = self._answer_stream(question, cited, [], True, SamplingConfig(temperature=0.0), model,
                                        pages=pages)
        return reply

    def _pages(self, passages: list) -> list[list]:
        """The whole page of each cited passage (every section of its MedQuAD document, in page order), pages in
        the passages' order, each once."""
        pages, seen = [], set()
        for passage in passages:
            sections = self.index.page_sections(passage.pair_id) if hasattr(self.index, "page_sections") else []
            sections = sections or [passage]
            key = sections[0].pair_id
            if key not in seen:
                seen.add(key)
                pages.append(sections)
        return pages

    def _answer_stream(self, question: str, passages: list, history: list, grounded: bool,
                       sampling: SamplingConfig, model: AnswerModel | None, pages: list[list] | None = None,
                       no_answer: str = NO_ANSWER_TEXT, **reply_fields) -> Iterator[ChatReply]:
        """Growing replies to a masked question over its retrieved passages: ``model``'s answer (None: the
        extract), drawn from every sentence of the cited pages (``pages``: given instead of the passages' own)."""
        reply = ChatReply(**reply_fields)
        if not passages:
            reply.category = Category.NO_ANSWER if reply.category == Category.ANSWER else reply.category
            reply.answer, reply.finished = no_answer, True
            yield reply
            return
        reply.sources = _sources(passages)
        pages = pages or self._pages(passages)
        # Page order for the model (it learned pages in that order); for the extract, each page's retrieved section
        # first, since its passage-rank prior prefers what retrieval ranked higher.
        sections = [s for page in pages for s in page]
        # For the extract, the cited sections first (retrieval's order), then the rest of their pages.
        cited = list({p.pair_id: p for p in passages}.values())
        ranked = cited + [s for s in sections if s.pair_id not in {p.pair_id for p in cited}]
        texts = [s.answer for s in sections]
        if model is not None and model.scorer is not None:
            yield reply  # the placeholder while the sentences are scored
            # The pages of the sections retrieval ranked best for the message's questions: on the gate's 40 questions
            # the typed quick-start model scored ROUGE-2 29.1 from them against 24.5 from every cited page.
            best = {p.pair_id for p in cited if p.question_best} or {cited[0].pair_id}
            read = [page for page in pages if best & {s.pair_id for s in page}] or pages[:1]
            chosen = self._selected(question, read, model.scorer)
            checked = verify(chosen.text, texts)
            reply.model_text, reply.support_rate = chosen.text, checked.support_rate
            if checked.support_rate >= self.config.min_support_rate and not is_degenerate(checked.text):
                self._finish(reply, checked.text, AnswerKind.MODEL, [s for page in read for s in page],
                             chosen.passages)
                _cite(reply, passages, [sections[s.passage] for s in checked.kept])
                yield reply
                return
        elif model is not None and model.generator is not None:
            yield from self._generated(reply, question, passages, history, grounded, sampling, model.generator)
            if reply.finished:
                return
        if self.config.extract_scope != "page":
            best = [p for p in cited if p.question_best] or cited[:1]
            ranked = best if self.config.extract_scope == "best" else cited
        extract = extractive_answer(question, [s.answer for s in ranked], cited=len(cited), config=self.config.extract,
                                    passage_questions=[s.question for s in ranked])
        kind = AnswerKind.EXTRACT if extract.text else AnswerKind.NONE
        self._finish(reply, extract.text, kind, ranked, extract.passages)
        _cite(reply, passages, [ranked[p] for p, _ in extract.sentences])
        yield reply

    @staticmethod
    def _finish(reply: ChatReply, answer: str, kind: AnswerKind, sections: list, quoted: list[int]) -> None:
        """Complete ``reply`` with its answer; its evidence is the text of the page sections the answer quotes."""
        reply.answer, reply.answer_kind, reply.finished = answer, kind, True
        quoted_sections = [sections[i] for i in quoted] or sections[:1]
        reply.evidence = "\n\n".join(s.answer for s in quoted_sections)

    def _selected(self, question: str, pages: list[list], scorer: SentenceScorer):
        """The model's answer: the sentences of the cited pages it scores highest, page by page in one pass each
        (``gpt2chat.modeling.selection``), whole and in page order; the threshold sets the length."""
        candidates, scores, offset = [], [], 0
        for page in pages:
            found = answer_candidates([s.answer for s in page], per_passage=self.config.section_sentences)
            candidates += [(offset + p, n, text) for p, n, text in found]
            scores.extend(scorer.scores(question, [text for _, _, text in found], section_starts(found)))
            offset += len(page)
        return choose_sentences(candidates, scores, max_sentences=self.config.answer_max_sentences,
                                max_chars=self.config.answer_max_chars, min_score=self.config.select_threshold)

    def _generated(self, reply: ChatReply, question: str, passages: list, history: list, grounded: bool,
                   sampling: SamplingConfig, generator: TokenStreamer) -> Iterator[ChatReply]:
        """The generating model's answer, streamed sentence by sentence once each is complete and supported by the
        top passage's reference (copy decoding); ``reply.finished`` stays False when it falls back."""
        evidence = reference_passage(passages[0].answer)
        texts = [evidence, *(reference_passage(p.answer) for p in passages[1:])]
        reply.evidence = evidence
        reference = evidence if grounded else None
        prompt_ids, reference = self._prompt_ids(generator, question, reference, history, sampling.max_new_tokens)
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
                    reply.answer, reply.answer_kind = checked.text, AnswerKind.MODEL
                    _cite(reply, passages, [passages[s.passage] for s in checked.kept])
                    yield reply
        reply.model_text = clean_answer(generator.decode(generated), finished=True)
        checked = verify(reply.model_text, texts)
        reply.support_rate = checked.support_rate
        if checked.support_rate >= self.config.min_support_rate and not is_degenerate(checked.text):
            reply.answer, reply.answer_kind, reply.finished = checked.text, AnswerKind.MODEL, True
            _cite(reply, passages, [passages[s.passage] for s in checked.kept])
            yield reply
        else:
            reply.answer, reply.answer_kind = "", AnswerKind.NONE
            _cite(reply, passages, [])

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


def _sources(passages, quoted_sections: Sequence = ()) -> list[Source]:
    """One source per cited page (by URL), in retrieval order. The pages of ``quoted_sections`` (the page sections the
    answer's sentences came from, in answer order; a section of the cited page that retrieval did not cite counts)
    are quoted, each with the text of its quoted sections; every other page has the section retrieval cited."""
    quoted: dict[str, list[str]] = {}
    for section in quoted_sections:
        if section.url:
            texts = quoted.setdefault(current_url(section.url), [])
            if section.answer not in texts:
                texts.append(section.answer)
    seen, sources = set(), []
    for passage in passages:
        if passage.url and passage.url not in seen:
            seen.add(passage.url)
            url = current_url(passage.url)
            sources.append(Source(title=passage.focus or passage.question, url=url, source=passage.source,
                                  text="\n\n".join(quoted[url]) if url in quoted else passage.answer,
                                  quoted=url in quoted))
    return sources


def _cite(reply: ChatReply, passages, quoted_sections: Sequence) -> None:
    """Set ``reply.sources`` from the cited ``passages`` with the pages the shown answer quotes marked
    (``_sources``). An answer whose sections name no cited page quotes the first, as its evidence does."""
    reply.sources = _sources(passages, quoted_sections if reply.answer else ())
    if reply.answer and reply.sources and not any(s.quoted for s in reply.sources):
        reply.sources[0] = dataclasses.replace(reply.sources[0], quoted=True)


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
    """The reply for a terminal: notice, answer (with how it was made), the pages it quotes under "Source(s):" and the
    other retrieved pages under "Related pages:", as the web UI shows them."""
    lines = [part for part in (reply.notice, reply.answer) if part]
    if reply.answer_kind == AnswerKind.EXTRACT:
        lines.insert(len(lines) - 1, f"[{EXTRACT_NOTICE}]")
    quoted = reply.quoted_sources
    for heading, sources in (("Source:" if len(quoted) == 1 else "Sources:", quoted),
                             ("Related pages:", reply.related_sources)):
        if sources:
            lines += [heading, *(f"- {s.label}: {s.url}" for s in sources)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.engine", description=__doc__.split("\n")[0])
    parser.add_argument("question")
    parser.add_argument("--model", help="preset name or directory (default: $GPT2CHAT_MODEL or the quick-start "
                                         "model)")
    parser.add_argument("--no-model", action="store_true",
                        help="answer with the summary of the NIH page only: no model is loaded (as app.py --no-model)")
    parser.add_argument("--data", help="MedQuAD directory for the retrieval index")
    parser.add_argument("--no-grounding", action="store_true", help="leave the retrieved passage out of the prompt")
    parser.add_argument("--no-gate", action="store_true", help="show model text without the quality gate")
    parser.add_argument("--temperature", type=float, default=SamplingConfig.temperature)
    parser.add_argument("--max-new-tokens", type=int, default=SamplingConfig.max_new_tokens)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if args.no_model and args.model:
        parser.error("--no-model and --model exclude each other")
    model = None if args.no_model else args.model or settings.default_model()
    engine = ChatEngine.build(EngineConfig(model=model, data=args.data))
    status = engine.serve_ungated() if args.no_gate else engine.gate()
    print(status.detail, file=sys.stderr)
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

