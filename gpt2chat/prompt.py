"""The one prompt format shared by training and generation.

    Reference: <retrieved passage>          (optional: grounded chat and part of the training examples)

    Question: <question>
    Answer: <answer><|endoftext|>

Earlier turns of a conversation come first, each as a Question/Answer block. Generation stops at
``<|endoftext|>``, which GPT-2's vocabulary already has, so no token is added to the vocabulary.
"""

from __future__ import annotations

from gpt2chat.tokenizer import END_OF_TEXT

REFERENCE_PREFIX = "Reference: "
QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "Answer:"


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
