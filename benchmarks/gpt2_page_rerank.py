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


class QuestionScorer:
    """log P(question | reference prompt) for several references at once, from the backbone's hidden states and
    the tied token embeddings (GPT-2's output layer), read only at the question's positions."""

    BATCH_BUCKETS = (1, 2, 4, 8, 16)

    def __init__(self, causal_lm, width: int | None = None, question_tokens: int | None = None):
        from keras import ops

        from gpt2chat.modeling.generation import _compile

        backbone = causal_lm.backbone
        self.tokenizer = causal_lm.preprocessor.tokenizer
        trained = getattr(causal_lm.preprocessor, "sequence_length", None) or backbone.max_sequence_length
        self.width = min(width or trained, backbone.max_sequence_length)
        self.question_tokens = question_tokens or self.width // 2
        self.embeddings = ops.convert_to_numpy(backbone.token_embedding.embeddings).astype(np.float32)

        def hidden(token_ids):
            return backbone({"token_ids": token_ids, "padding_mask": ops.ones_like(token_ids, dtype="bool")})

        self._hidden = _compile(hidden, backbone.hidden_dim <= 512)
        self._question_prefix = self.encode("\n\nQuestion:")
        self._bare_prefix = self.encode("Question:")

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in np.asarray(self.tokenizer(text)).reshape(-1)]

    def warm_up(self) -> None:
        for batch in self.BATCH_BUCKETS[:4]:
            self._hidden(np.zeros((batch, self.width), np.int32))

    def rows(self, question: str, references: list[str]) -> tuple[list[list[int]], list[int]]:
        """Token rows (one per reference, then the no-reference row) and the question's ids."""
        from gpt2chat.modeling.prompt import REFERENCE_PREFIX

        asked = self.encode(" " + question.strip())[-self.question_tokens:]
        rows = []
        room = self.width - len(asked) - len(self._question_prefix)
        for reference in references:
            head = self.encode(f"{REFERENCE_PREFIX}{reference.strip()}")[:room]
            rows.append(head + self._question_prefix + asked)
        rows.append(self._bare_prefix + asked)
        return rows, asked

    def score(self, question: str, references: list[str]) -> tuple[np.ndarray, float, int]:
        """(log P(question | each reference), log P(question | no reference), number of question tokens)."""
        from keras import ops

        rows, asked = self.rows(question, references)
        from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID

        size = next((b for b in self.BATCH_BUCKETS if b >= len(rows)), len(rows))
        batch = np.full((size, self.width), END_OF_TEXT_ID, np.int32)
        for r, tokens in enumerate(rows):
            batch[r, : len(tokens)] = tokens
        hidden = np.asarray(ops.convert_to_numpy(self._hidden(batch)), np.float32)
        n = len(asked)
        totals = np.zeros(len(rows), np.float64)
        targets = np.asarray(asked)
        for r, tokens in enumerate(rows):
            start = len(tokens) - n  # the first question token; its logits come from the position before
            logits = hidden[r, start - 1: len(tokens) - 1] @ self.embeddings.T
            logits = logits - logits.max(axis=-1, keepdims=True)
            log_probs = logits[np.arange(n), targets] - np.log(np.exp(logits).sum(axis=-1))
            totals[r] = float(log_probs.sum())
        return totals[:-1], float(totals[-1]), n


def first_after(order: list[int], hits: list[bool]) -> bool:
    return bool(order) and hits[order[0]]


def settings_orders(gains_sum: np.ndarray, n_tokens: int, weights_mean, weights_sum) -> dict[str, list[int]]:
    """Candidate orders (indices into the retrieval order) per re-ranking setting."""
    k = len(gains_sum)
    ranks = np.arange(k, dtype=np.float64)
    orders = {"baseline (retrieval order)": list(range(k))}
    # a stable sort on -gain: ties keep the retrieval order
    orders["gpt2 alone (sum = mean = gain)"] = list(np.argsort(-gains_sum, kind="stable"))
    mean = gains_sum / max(n_tokens, 1)
    for w in weights_mean:
        orders[f"-rank + {w:g} * gain/token"] = list(np.argsort(-(-ranks + w * mean), kind="stable"))
    for w in weights_sum:
        orders[f"-rank + {w:g} * gain(sum)"] = list(np.argsort(-(-ranks + w * gains_sum), kind="stable"))
    return orders


def liveqa_items(index, limit: int | None) -> list[tuple[str, object]]:
    """(message text, hit function on a passage) for the LiveQA train messages with an answered annotated focus."""
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
    from gpt2chat.corpus.data import focus_key
    from gpt2chat.search import retrieval_eval as ev

    items = []
    for row in ev.conversations(ev.LAY_QUESTIONS)[0::2]:  # rows 1, 3, 5, ...: the others stay unseen
        want = ev._names(row["foci"])
        items.append((row["message"], lambda passage, want=want: focus_key(passage.focus) in want))
    return items[:limit]


def evaluate(name: str, items, index, scorer, k: int, weights_mean, weights_sum, latencies: list[float],
             progress: bool) -> tuple:
    """(hits@1 per setting, ceiling, messages with a candidate, top changed per setting, pair counts, per-token
    gain spreads)."""
    from tqdm import tqdm

    from gpt2chat.modeling.prompt import reference_passage

    wins = collections.Counter()
    ceiling = answered = 0
    moved = collections.Counter()
    pairs = collections.Counter()  # (right page, wrong page) pairs of one message: which one GPT-2 scores higher
    spreads = []
    for text, hit in tqdm(items, desc=name, unit="msg", disable=not progress, file=sys.stderr):
        passages = index.retrieve(text, k=k).passages(k)
        hits = [hit(p) for p in passages]
        ceiling += any(hits)
        answered += bool(passages)
        if passages:
            started = time.perf_counter()
            with_page, without, n = scorer.score(text, [reference_passage(p.answer) for p in passages])
            latencies.append((time.perf_counter() - started) * 1000)
            gains = with_page - without
            spreads.append(float(gains.max() - gains.min()) / n)
            for right in (i for i, h in enumerate(hits) if h):
                for wrong in (j for j, h in enumerate(hits) if not h):
                    pairs["n"] += 1
                    pairs["gpt2 right"] += gains[right] > gains[wrong]
                    pairs["retrieval right"] += right < wrong
        else:
            gains, n = np.zeros(0), 0
        for setting, order in settings_orders(gains, n, weights_mean, weights_sum).items():
            wins[setting] += first_after(order, hits)
            moved[setting] += bool(order) and order[0] != 0
    return wins, ceiling, answered, moved, pairs, spreads


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
    parser.add_argument("--width", type=int, default=None,
                        help="tokens per scored row (default: the preset's training sequence length)")
    parser.add_argument("--question-tokens", type=int, default=None,
                        help="keep the message's last N tokens (default: half the width)")
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
    unknown = set(sets) - {"liveqa-train", "lay-odd"}
    if unknown or not sets:
        parser.error(f"unknown set(s) {', '.join(sorted(unknown)) or '(none)'}; choose liveqa-train, lay-odd")
    if args.k < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--k and --limit must be at least 1")
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
    scorer = QuestionScorer(causal_lm, args.width, args.question_tokens)
    scorer.warm_up()
    index = RetrievalIndex.load_or_build(args.data, progress=not args.no_progress)

    print(f"model {args.model}: {causal_lm.backbone.num_layers} layers, width {causal_lm.backbone.hidden_dim}; "
          f"rows of {scorer.width} tokens, question's last {scorer.question_tokens} tokens; top-{args.k} re-ranked")
    latencies: list[float] = []
    table = {}
    for name in sets:
        items = liveqa_items(index, args.limit) if name == "liveqa-train" else lay_items(args.limit)
        wins, ceiling, answered, moved, pairs, spreads = evaluate(
            name, items, index, scorer, args.k, weights_mean, weights_sum, latencies, not args.no_progress)
        table[name] = (len(items), wins, ceiling, answered, moved, pairs, spreads)

    print()
    header = f"{'setting':<34}" + "".join(f"{name + ' hit@1':>22}{'moved':>7}" for name in table)
    print(header)
    print("-" * len(header))
    for setting in next(iter(table.values()))[1]:
        line = f"{setting:<34}"
        for n, wins, _, _, moved, _, _ in table.values():
            line += f"{wins[setting]:>15}/{n:<3} {100 * wins[setting] / max(n, 1):>4.0f}%{moved[setting]:>5}  "
        print(line)
    line = f"{'ceiling (expected focus in top-' + str(args.k) + ')':<34}"
    for n, _, ceiling, *_ in table.values():
        line += f"{ceiling:>15}/{n:<3} {100 * ceiling / max(n, 1):>4.0f}%{'':>5}  "
    print(line)
    for name, (n, _, _, answered, _, pairs, spreads) in table.items():
        print(f"{name}: {answered}/{n} messages with at least one candidate (the others have no NIH answer); "
              f"of {pairs['n']} (expected-focus page, other page) pairs within a message, GPT-2's gain is higher "
              f"on the expected one in {pairs['gpt2 right']} ({100 * pairs['gpt2 right'] / max(pairs['n'], 1):.0f}%"
              f"; 50% = chance), the retrieval order has it first in {pairs['retrieval right']} "
              f"({100 * pairs['retrieval right'] / max(pairs['n'], 1):.0f}%); gain spread across a message's "
              f"candidates, median {np.median(spreads) if spreads else 0:.3f} nats/token")
    if latencies:
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"GPT-2 scoring latency per message ({len(latencies)} messages, up to {args.k} candidates + the "
              f"no-page row in one batch of {scorer.width}-token rows): p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
              f"mean {np.mean(latencies):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
