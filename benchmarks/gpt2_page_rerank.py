"""Does the trained GPT-2 improve which page is cited first, as a re-ranking feature of the top-5 passages?

    PYTHONPATH=$PWD .venv/bin/python benchmarks/gpt2_page_rerank.py [--model models/default] [--limit 20]

For each message, the top-5 passages ``RetrievalIndex.retrieve(message, k=5).passages(5)`` (the pages the chat
engine would cite, in order) are scored by the model as

    log P(question tokens | "Reference: <reference_passage(answer)>\\n\\nQuestion:")      (one row per candidate)
    log P(question tokens | "Question:")                                                (the no-page row)

in one batched forward pass of the backbone (the training prompt format, ``modeling/prompt.py``), read from the
logits at the question's tokens. The question is the whole message (its last ``--question-tokens`` tokens if
longer); the reference is cut at the token level to fit ``--width`` (default: the preprocessor's sequence length,
the length the model was trained at). ``gain`` is the per-candidate log-likelihood minus the no-page one (a PMI).

For one message the question tokens are the same for every candidate, so ranking by the sum, the per-token mean or
the gain gives the same order: "gpt2 alone" is that one order. The mixes combine it with the retrieval order:
``-rank + w * gain`` (rank 0 = first cited), with the gain per token (nats/token) or summed (nats).

Success = the first page's focus is an expected one, exactly as the evaluation counts it:

* LiveQA 2017 **train** (``retrieval_eval.liveqa_messages("train")``; dev is for evaluation only): the messages whose
  annotated focus is an answered MedQuAD focus or synonym; hit = the first passage's focus (``name_key``) or a synonym
  of it is an annotated focus (``retrieval_eval.evaluate_liveqa``).
* the lay set's rows 1, 3, 5, ... (``conversations(LAY_QUESTIONS)[0::2]``; the others are kept unseen): hit = the
  first passage's ``focus_key`` is an expected focus (``retrieval_eval.evaluate_lay``).

"ceiling" = an expected focus is among the 5 candidates. Latency = wall time of the GPT-2 scoring of one message's
candidates (tokenising, the forward pass, the log-softmax at the question's tokens), after warm-up.
No message text is printed or written: only counts.

The question direction is the issue's feature, but training weighs only the answer tokens (``modeling/tokens.py``:
weight 0 on the prompt, reference and question), so the model was never trained to predict a question; the answer
direction scores what it was trained on: log P(the page's first 64 tokens | "Question: q\nAnswer:") minus
log P(the same | "Answer:").

Measured (the quick-start model, models/default: 4 layers x 256, validation perplexity 383; index in
GPT2CHAT_CACHE; 2 shared cores, load average 3 to 5.6):

    setting                         LiveQA train hit@1   lay odd rows hit@1
    baseline (retrieval order)      57/62 92%            19/35 54%
    question, GPT-2 alone           39/62 63% (+1 -19)   13/35 37% (+0 -6)
    question, -rank + w*gain        57/62 at best (w <= 5/token or <= 0.05 summed: top page unchanged); larger w
                                    only loses (w = 20/token: 53/62, 16/35)
    answer, GPT-2 alone             42/62 68% (+2 -17)   12/35 34% (+0 -7)
    answer, -rank + w*gain          57/62 at best (unchanged); w = 10/token: 52/62, 18/35
    ceiling (expected focus top-5)  61/62 98%            19/35 54%

Pairs (expected page vs another page of one message) ordered right by GPT-2's gain: question direction 38/100 on
LiveQA (below chance), 24/35 on the lay rows; answer direction 46/100 and 14/35; the retrieval order 90/100 and
34/35. Scoring latency per message, p50/p95: question direction 338/630 ms (load 3) to 423/867 ms (load 5.6);
answer direction 713/1385 ms. No setting re-ranks better than the retrieval order; 4 LiveQA messages and 0 lay
rows could gain at all.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

DEFAULT_WEIGHTS_MEAN = (1.0, 2.0, 5.0, 10.0, 20.0)
DEFAULT_WEIGHTS_SUM = (0.05, 0.1, 0.2, 0.5, 1.0)
DIRECTIONS = ("question", "answer")


class PageScorer:
    """Log-likelihoods of target tokens after prefixes, several rows in one batched forward pass, from the
    backbone's hidden states and the tied token embeddings (GPT-2's output layer), read only at the targets."""

    BATCH_BUCKETS = (1, 2, 4, 8, 16)

    def __init__(self, causal_lm, width: int | None = None, question_tokens: int | None = None,
                 answer_tokens: int = 64):
        from keras import ops

        from gpt2chat.modeling.generation import _compile

        backbone = causal_lm.backbone
        self.tokenizer = causal_lm.preprocessor.tokenizer
        trained = getattr(causal_lm.preprocessor, "sequence_length", None) or backbone.max_sequence_length
        self.width = min(width or trained, backbone.max_sequence_length)
        self.question_tokens = min(question_tokens or self.width // 2, self.width // 2)
        self.answer_tokens = min(answer_tokens, self.width // 2 - 8)
        self.embeddings = ops.convert_to_numpy(backbone.token_embedding.embeddings).astype(np.float32)

        def hidden(token_ids):
            return backbone({"token_ids": token_ids, "padding_mask": ops.ones_like(token_ids, dtype="bool")})

        self._hidden = _compile(hidden, backbone.hidden_dim <= 512)
        # build_prompt joins "Reference: ...\n" and "Question: ...\nAnswer:" with "\n"; cut at these points the
        # tokens are the same as the whole prompt's (checked on a sample)
        self._after_reference = self.encode("\n\nQuestion:")
        self._question = self.encode("Question:")
        self._answer = self.encode("\nAnswer:")
        self._bare_answer = self.encode("Answer:")

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in np.asarray(self.tokenizer(text)).reshape(-1)]

    def warm_up(self) -> None:
        for batch in self.BATCH_BUCKETS:
            self._hidden(np.zeros((batch, self.width), np.int32))

    def log_likelihoods(self, rows: list[tuple[list[int], list[int]]]) -> np.ndarray:
        """Sum of log P(target tokens | prefix) per (prefix, target) row (prefix + target <= width)."""
        from keras import ops

        from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID

        totals = np.zeros(len(rows), np.float64)
        step = self.BATCH_BUCKETS[-1]
        for first in range(0, len(rows), step):
            group = rows[first: first + step]
            size = next(b for b in self.BATCH_BUCKETS if b >= len(group))
            batch = np.full((size, self.width), END_OF_TEXT_ID, np.int32)
            for r, (prefix, target) in enumerate(group):
                batch[r, : len(prefix) + len(target)] = prefix + target
            hidden = np.asarray(ops.convert_to_numpy(self._hidden(batch)), np.float32)
            for r, (prefix, target) in enumerate(group):
                # the logits at position i predict token i + 1
                logits = hidden[r, len(prefix) - 1: len(prefix) + len(target) - 1] @ self.embeddings.T
                logits -= logits.max(axis=-1, keepdims=True)
                picked = logits[np.arange(len(target)), target] - np.log(np.exp(logits).sum(axis=-1))
                totals[first + r] = float(picked.sum())
        return totals

    def asked(self, question: str) -> list[int]:
        return self.encode(" " + question.strip())[-self.question_tokens:]  # a long message: its end

    def question_gains(self, question: str, references: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """log P(question | "Reference: page\n\nQuestion:") - log P(question | "Question:"), per page: (sum, per
        token). The reference is cut at the token level to fit the row."""
        from gpt2chat.modeling.prompt import REFERENCE_PREFIX

        asked = self.asked(question)
        room = self.width - len(asked) - len(self._after_reference)
        rows = [(self.encode(f"{REFERENCE_PREFIX}{r.strip()}")[:room] + self._after_reference, asked)
                for r in references]
        totals = self.log_likelihoods([*rows, (self._question, asked)])
        gains = totals[:-1] - totals[-1]
        return gains, gains / len(asked)

    def answer_gains(self, question: str, answers: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """log P(page's opening | "Question: q\nAnswer:") - log P(page's opening | "Answer:"), per page: (sum, per
        token). The opening is the page's first ``answer_tokens`` tokens: the tokens training weighs."""
        asked = self.asked(question)
        openings = [self.encode(" " + a.strip())[: self.answer_tokens] or self._answer for a in answers]
        with_question = self._question + asked + self._answer
        rows = [(with_question, o) for o in openings] + [(self._bare_answer, o) for o in openings]
        totals = self.log_likelihoods(rows)
        gains = totals[: len(answers)] - totals[len(answers):]
        return gains, gains / np.array([len(o) for o in openings])


def orders(gain_sum: np.ndarray, gain_token: np.ndarray, direction: str, weights_mean,
           weights_sum) -> dict[str, list[int]]:
    """Candidate orders (indices into the retrieval order) per re-ranking setting; stable sorts, so ties keep the
    retrieval order."""
    ranks = np.arange(len(gain_sum), dtype=np.float64)
    found = {}
    if direction == "question":  # same question tokens for every page: sum, mean and gain give one order
        found["q: gpt2 alone (sum=mean=gain)"] = np.argsort(-gain_sum, kind="stable")
    else:
        found["a: gpt2 alone, gain/token"] = np.argsort(-gain_token, kind="stable")
        found["a: gpt2 alone, gain(sum)"] = np.argsort(-gain_sum, kind="stable")
    tag = direction[0]
    for w in weights_mean:
        found[f"{tag}: -rank + {w:g} * gain/token"] = np.argsort(ranks - w * gain_token, kind="stable")
    for w in weights_sum:
        found[f"{tag}: -rank + {w:g} * gain(sum)"] = np.argsort(ranks - w * gain_sum, kind="stable")
    return {name: [int(i) for i in order] for name, order in found.items()}


def liveqa_items(index, limit: int | None) -> list[tuple[str, object]]:
    """(message text, hit function on a passage) for the LiveQA train messages with an answered annotated focus,
    as ``retrieval_eval.evaluate_liveqa`` selects and scores them."""
    from gpt2chat.corpus import data
    from gpt2chat.corpus.data import name_key, synonym_sets
    from gpt2chat.search import retrieval_eval as ev

    synonyms = synonym_sets(data.load_annotations(None))
    answered = {name_key(index.passage(i)["focus"]) for i in range(len(index))}
    answered_names = {name for focus in answered for name in synonyms.get(focus, {focus})}
    items = []
    for message in ev.liveqa_messages("train"):
        annotated = {name_key(s["focus"]) for s in message["subquestions"]}
        if not annotated & answered_names:
            continue

        def hit(passage, annotated=annotated):
            cited = name_key(passage.focus)
            return bool(annotated & synonyms.get(cited, {cited}))

        items.append((message["text"], hit))
    return items[:limit]


def lay_items(limit: int | None) -> list[tuple[str, object]]:
    """The lay set's rows 1, 3, 5, ... (the others stay unseen), scored as ``retrieval_eval.evaluate_lay``."""
    from gpt2chat.corpus.data import focus_key
    from gpt2chat.search import retrieval_eval as ev

    items = []
    for row in ev.conversations(ev.LAY_QUESTIONS)[0::2]:
        want = ev._names(row["foci"])
        items.append((row["message"], lambda passage, want=want: focus_key(passage.focus) in want))
    return items[:limit]


def evaluate(name: str, items, index, scorer: PageScorer, k: int, directions, weights_mean, weights_sum,
             latencies: dict[str, list[float]], progress: bool) -> dict:
    """Hits@1 and top changes per setting, the ceiling, messages with a candidate, and per direction the
    (expected page, other page) pairs GPT-2 orders right."""
    from tqdm import tqdm

    from gpt2chat.modeling.prompt import reference_passage

    wins, moved, pairs = collections.Counter(), collections.Counter(), collections.Counter()
    fixed, broken = collections.Counter(), collections.Counter()  # first page right now and not before, and back
    ceiling = answered = 0
    for text, hit in tqdm(items, desc=name, unit="msg", disable=not progress, file=sys.stderr):
        passages = index.retrieve(text, k=k).passages(k)
        hits = [hit(p) for p in passages]
        ceiling += any(hits)
        answered += bool(passages)
        found = {"baseline (retrieval order)": list(range(len(passages)))}
        for direction in directions:
            if not passages:
                continue
            started = time.perf_counter()
            if direction == "question":
                gain_sum, gain_token = scorer.question_gains(text, [reference_passage(p.answer) for p in passages])
            else:
                gain_sum, gain_token = scorer.answer_gains(text, [p.answer for p in passages])
            latencies[direction].append((time.perf_counter() - started) * 1000)
            found.update(orders(gain_sum, gain_token, direction, weights_mean, weights_sum))
            for right in (i for i, h in enumerate(hits) if h):
                for wrong in (j for j, h in enumerate(hits) if not h):
                    pairs[f"{direction} n"] += 1
                    pairs[f"{direction} gpt2"] += gain_token[right] > gain_token[wrong]
                    pairs[f"{direction} retrieval"] += right < wrong
        for setting, order in found.items():
            right = bool(order) and hits[order[0]]
            wins[setting] += right
            moved[setting] += bool(order) and order[0] != 0
            fixed[setting] += right and not hits[0]
            broken[setting] += hits[0] and not right if hits else False
    return {"n": len(items), "wins": wins, "moved": moved, "fixed": fixed, "broken": broken, "pairs": pairs,
            "ceiling": ceiling, "answered": answered}


def _share(count: int, total: int) -> str:
    return f"{count:>3}/{total:<3} {100 * count / max(total, 1):>3.0f}%"


def report(table: dict, k: int, directions, latencies: dict[str, list[float]], scorer: PageScorer) -> None:
    names = list(table)
    settings_seen = []
    for result in table.values():
        settings_seen += [s for s in result["wins"] if s not in settings_seen]
    print(f"\n{'setting':<36}" + "".join(f"{name + ' hit@1':>22}{'moved +fix -break':>19}" for name in names))
    print("-" * (36 + 41 * len(names)))
    for setting in settings_seen:
        print(f"{setting:<36}" + "".join(
            f"{_share(table[n]['wins'][setting], table[n]['n']):>22}{table[n]['moved'][setting]:>9}"
            f"{'+' + str(table[n]['fixed'][setting]):>5}{'-' + str(table[n]['broken'][setting]):>5}" for n in names))
    print(f"{'ceiling (an expected focus in top-' + str(k) + ')':<36}"
          + "".join(f"{_share(table[n]['ceiling'], table[n]['n']):>22}{'':>19}" for n in names))
    print("(moved: messages whose first cited page changes; +fix: now right, wrong before; -break: the reverse)")
    for name, result in table.items():
        print(f"{name}: {result['answered']}/{result['n']} messages with at least one candidate")
        for direction in directions:
            pairs = result["pairs"]
            total = pairs[f"{direction} n"]
            print(f"  {direction} direction: of {total} (expected-focus page, other page) pairs of one message, "
                  f"GPT-2's gain/token is higher on the expected page in {_share(pairs[f'{direction} gpt2'], total)}"
                  f" (50% = chance); the retrieval order puts it first in "
                  f"{_share(pairs[f'{direction} retrieval'], total)}")
    for direction in directions:
        if latencies[direction]:
            p50, p95 = np.percentile(latencies[direction], [50, 95])
            rows = f"{k} + 1" if direction == "question" else f"2 x {k}"
            print(f"latency of the {direction} direction per message ({len(latencies[direction])} messages, "
                  f"{rows} rows of {scorer.width} tokens, one batch): p50 {p50:.0f} ms, p95 {p95:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", default=None,
                        help="a Keras-Hub GPT2CausalLM preset directory (default: $GPT2CHAT_MODEL, else models/default, "
                             "the quick-start model)")
    parser.add_argument("--data", default=None, help="MedQuAD directory (default: the settings' shared copy)")
    parser.add_argument("--k", type=int, default=5, help="candidates re-ranked per message (default: 5)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N messages of each set")
    parser.add_argument("--sets", default="liveqa-train,lay-odd",
                        help="comma-separated: liveqa-train, lay-odd (default: both)")
    parser.add_argument("--directions", default="question,answer",
                        help="comma-separated: question (P(question | page), the issue's feature), answer "
                             "(P(page's opening | question), the direction training weighs) (default: both)")
    parser.add_argument("--width", type=int, default=None,
                        help="tokens per scored row (default: the preset's training sequence length)")
    parser.add_argument("--question-tokens", type=int, default=None,
                        help="keep the message's last N tokens (default and maximum: half the width)")
    parser.add_argument("--answer-tokens", type=int, default=64,
                        help="page opening tokens scored in the answer direction (default: 64)")
    parser.add_argument("--weights-mean", default=",".join(f"{w:g}" for w in DEFAULT_WEIGHTS_MEAN),
                        help="w for -rank + w * gain per token (comma-separated)")
    parser.add_argument("--weights-sum", default=",".join(f"{w:g}" for w in DEFAULT_WEIGHTS_SUM),
                        help="w for -rank + w * summed gain (comma-separated)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    try:
        weights_mean = tuple(float(w) for w in args.weights_mean.split(",") if w.strip())
        weights_sum = tuple(float(w) for w in args.weights_sum.split(",") if w.strip())
    except ValueError:
        parser.error("--weights-mean/--weights-sum must be comma-separated numbers")
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if not sets or set(sets) - {"liveqa-train", "lay-odd"}:
        parser.error(f"--sets {args.sets!r}: choose from liveqa-train, lay-odd")
    directions = [d.strip() for d in args.directions.split(",") if d.strip()]
    if not directions or set(directions) - set(DIRECTIONS):
        parser.error(f"--directions {args.directions!r}: choose from {', '.join(DIRECTIONS)}")
    if args.k < 1 or (args.limit is not None and args.limit < 1) or args.answer_tokens < 1:
        parser.error("--k, --limit and --answer-tokens must be at least 1")
    if args.width is not None and args.width < 64:
        parser.error("--width must be at least 64")
    from gpt2chat import settings

    args.model = args.model or settings.default_model()
    if not (Path(args.model) / "config.json").is_file():
        parser.error(f"{args.model} is not a Keras-Hub preset directory (no config.json)")

    from gpt2chat.modeling.model import ModelUnavailable, load_preset
    from gpt2chat.search.retrieval import RetrievalIndex

    try:
        causal_lm = load_preset(args.model)
    except ModelUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    scorer = PageScorer(causal_lm, args.width, args.question_tokens, args.answer_tokens)
    scorer.warm_up()
    index = RetrievalIndex.load_or_build(args.data, progress=not args.no_progress)

    print(f"model {args.model}: {causal_lm.backbone.num_layers} layers, width {causal_lm.backbone.hidden_dim}; "
          f"rows of {scorer.width} tokens, the message's last {scorer.question_tokens} tokens at most, "
          f"{scorer.answer_tokens} page tokens in the answer direction; top-{args.k} re-ranked")
    latencies = {d: [] for d in directions}
    table = {}
    for name in sets:
        items = liveqa_items(index, args.limit) if name == "liveqa-train" else lay_items(args.limit)
        table[name] = evaluate(name, items, index, scorer, args.k, directions, weights_mean, weights_sum,
                               latencies, not args.no_progress)
    report(table, args.k, directions, latencies, scorer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
