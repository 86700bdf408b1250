"""How long the replies users read are, and whether any sentence repeats in one.

    .venv/bin/python benchmarks/reply_length.py --limit 20 [--model DIR]

Seeded MedQuAD test questions go through the chat engine (no model by default: the app's first-start state, NIH
extracts) and ``gpt2chat.serving.ui.render_reply``. Printed: the median and range of words a reader sees in a reply
(the NIH text folded behind "Show the NIH text" is not counted: it is shown only on request), how many replies
repeat a sentence in what is visible, and how many repeat one inside the folded NIH text.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from gpt2chat.chat.engine import ChatEngine, EngineConfig  # noqa: E402
from gpt2chat.chat.grounding import split_sentences  # noqa: E402
from gpt2chat.corpus import data  # noqa: E402
from gpt2chat.corpus.splits import split_records  # noqa: E402
from gpt2chat.serving import ui  # noqa: E402

_FOLDED = re.compile(r"<details.*?</details>", re.S)
_MARKUP = re.compile(r"<[^>]+>|\]\([^)]*\)|[*_>#\[\]`]")


def plain(markdown: str) -> str:
    return " ".join(_MARKUP.sub(" ", markdown).split())


def repeated_sentences(text: str) -> list[str]:
    seen, repeated = set(), []
    for sentence in split_sentences(text.replace(" - ", "\n")):
        key = " ".join(sentence.lower().split())
        if len(key.split()) >= 4 and key in seen:  # short fragments ("Learn more.") are not sentences worth it
            repeated.append(sentence)
        seen.add(key)
    return repeated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None,
                        help="preset directory (default: none, NIH extracts as on a first start)")
    parser.add_argument("--limit", type=int, default=20, help="seeded test questions (default: 20)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--show", action="store_true", help="print every rendered reply")
    args = parser.parse_args(argv)
    records, _ = data.load_records(None)
    questions = random.Random(args.seed).sample(split_records(records)["test"], args.limit)
    engine = ChatEngine.build(EngineConfig(model=args.model))
    lengths, visible_repeats, folded_repeats = [], 0, 0
    for record in questions:
        rendered = ui.render_reply(engine.reply(record.question))
        visible = plain(_FOLDED.sub(" ", rendered))
        folded = " ".join(plain(block) for block in _FOLDED.findall(rendered))
        lengths.append(len(visible.split()))
        visible_repeats += bool(repeated_sentences(visible))
        folded_repeats += bool(repeated_sentences(folded))
        if args.show:
            print(f"--- {record.question}\n{rendered}\n")
    print(f"{len(questions)} test questions: median {statistics.median(lengths):.0f} words visible per reply "
          f"(range {min(lengths)}-{max(lengths)}); replies repeating a sentence: {visible_repeats} in the visible "
          f"text, {folded_repeats} in the folded NIH text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
