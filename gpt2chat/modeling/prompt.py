"""The one prompt format shared by training and generation, and everything that knows it.

    Reference: <retrieved passage>          (optional: grounded chat and part of the training examples)

    Question: <question>
    Answer: <answer><|endoftext|>

Earlier turns of a conversation come first, each as a Question/Answer block. Generation stops at
``<|endoftext|>``, which GPT-2's vocabulary already has, so no token is added to the vocabulary. A model that
goes on past its answer starts a new block: ``answer_ends`` finds that point and ``clean_answer`` cuts it off.
"""

from __future__ import annotations

import re

from gpt2chat.corpus.sentences import split_sentences
from gpt2chat.modeling.tokenizer import END_OF_TEXT

REFERENCE_PREFIX = "Reference: "
QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "Answer:"
# A reference passage is cut to this many characters, in training and in chat alike.
REFERENCE_CHARS = 600


def reference_passage(answer: str, limit: int = REFERENCE_CHARS) -> str:
    """The leading sentences of a passage, within ``limit`` characters (cut at a word if one sentence is longer)."""
    if len(answer) <= limit:
        return answer
    cut = answer[:limit]
    sentence_end = cut.rfind(". ")
    if sentence_end > limit // 3:
        return cut[: sentence_end + 1]
    return cut.rsplit(" ", 1)[0]


def qa_block(question: str, answer: str | None = None) -> str:
    """One turn; with no answer, the block ends at "Answer:" so the model writes the answer."""
    block = f"{QUESTION_PREFIX}{question.strip()}\n{ANSWER_PREFIX}"
    if answer is None:
        return block
    return f"{block} {answer.strip()}"


def build_prompt(
    question: str, *, reference: str | None = None, history: list[tuple[str, str]] = (),
) -> str:
    """The text the model continues. ``history`` is the earlier (question, answer) turns, oldest first."""
    parts = []
    if reference:
        parts.append(f"{REFERENCE_PREFIX}{reference.strip()}\n")
    parts.extend(qa_block(q, a) + "\n" for q, a in history)
    parts.append(qa_block(question))
    return "\n".join(parts)


def training_example(question: str, answer: str, *, reference: str | None = None) -> str:
    """A full supervised example: the prompt, the answer and the end-of-answer marker."""
    return f"{build_prompt(question, reference=reference)} {answer.strip()}{END_OF_TEXT}"


_BLOCK_START = re.compile(rf"\n?\s*(?:{QUESTION_PREFIX.strip()}|{REFERENCE_PREFIX.strip()}|{ANSWER_PREFIX})")


def answer_ends(text: str) -> bool:
    """The continuation has started a new prompt block: the answer before it is complete."""
    return bool(_BLOCK_START.search(text))


def clean_answer(text: str, *, finished: bool) -> str:
    """Cut the continuation at a new prompt block, drop repeated sentences and, once finished, a cut-off tail."""
    text = _BLOCK_START.split(text, 1)[0]
    kept, seen = [], set()
    for sentence in split_sentences(text):
        key = " ".join(sentence.lower().split())
        if key in seen:
            continue
        seen.add(key)
        kept.append(sentence)
    text = " ".join(kept)
    if finished and re.search(r"[.!?]", text):
        text = text[: max(text.rfind(c) for c in ".!?") + 1]
    return text
