"""Consumer messages as their users sent them, and the ones written for the project.

``written_consumer_messages.jsonl`` holds 640 consumer health messages with their question types and foci, written
by two helper agents from a one-page brief (docs/written_messages.md) without seeing LiveQA, MEDIQA, RQE or any
project file. The type classifier learns from all of them; the emergency detector learns from the odd-numbered ones
as ordinary messages and is measured on the even-numbered ones.

``written_check_messages.jsonl`` holds 599 more, written the same way from a brief asking for the question types
consumers ask less often (causes, susceptibility, inheritance, a drug's uses...): nothing learns from them and no
kept change was tried on them (docs/written_messages.md); ``python -m gpt2chat.retrieval --eval types|written``
measure on them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from gpt2chat import settings

WRITTEN_MESSAGES = settings.PACKAGE_DIR / "resources" / "written_consumer_messages.jsonl"
WRITTEN_CHECK_MESSAGES = WRITTEN_MESSAGES.with_name("written_check_messages.jsonl")


def message_text(row: dict) -> str:
    """An annotated consumer message (LiveQA or written row: subject, message) as its user sent it: the subject
    line, then the message (the way ``mediqa2019_qa.jsonl`` joins them)."""
    subject = html.unescape(row["subject"].strip())
    message = html.unescape(row["message"])  # the NLM form's rows escape quotes: "&quot;hypothyroidism&quot;"
    return f"{subject}. {message}" if subject else message


def read_written(path: Path | None = None) -> list[dict]:
    """The rows of a written-messages file (default ``WRITTEN_MESSAGES``; also ``WRITTEN_CHECK_MESSAGES``): id,
    subject, message, types, focus, in file order; a malformed line is a ValueError naming it."""
    path = path or WRITTEN_MESSAGES
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
                rows.append({"id": str(row["id"]), "subject": str(row["subject"]), "message": str(row["message"]),
                             "types": [str(t) for t in row["types"]], "focus": [str(f) for f in row["focus"]]})
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}, line {number}: not a written message ({error})") from None
    return rows
