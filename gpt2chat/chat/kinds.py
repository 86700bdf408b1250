"""What a chat reply is: how its answer was made and what kind of reply it is, one enum each.

Apart from ``gpt2chat.chat.engine`` (which starts TensorFlow) so that the ratings commands can use them too. String
enums: they compare equal to, and are stored (SQLite, JSON) as, their values.
"""

from __future__ import annotations

import enum


class AnswerKind(enum.StrEnum):
    """How the answer text was made (``ChatReply.answer_kind``, a rating's ``shown``)."""

    MODEL = "model"  # the model's supported sentences
    EXTRACT = "extract"  # the question-focused extract of the NIH page, labelled as a summary
    NONE = "none"  # no answer text: a notice alone (emergency, invalid input) or no NIH answer


class Category(enum.StrEnum):
    """What the reply is (``ChatReply.category``)."""

    ANSWER = "answer"
    EMERGENCY = "emergency"  # the call-for-help notice is the whole reply
    BOUNDARY = "boundary"  # a dosing or diagnosis notice, then the answer
    INVALID = "invalid"  # empty, too long or not English: a notice saying what to change
    NO_ANSWER = "no_answer"  # MedQuAD has no page for it: a MedlinePlus search is offered instead
