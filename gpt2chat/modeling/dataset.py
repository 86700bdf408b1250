"""The answered MedQuAD pairs as one table: a pandas DataFrame and a Hugging Face ``datasets.Dataset``.

    from gpt2chat.modeling.dataset import load_table
    table = load_table()                            # MedQuAD from settings.medquad_dir(), lengths in GPT-2 tokens
    df = table.frame
    df.head()
    df["source"].value_counts()
    df.groupby("split")["answer_tokens"].describe()
    table.dataset                                   # the same rows and columns as a datasets.Dataset
    table.dataset.filter(lambda row: row["type"] == "treatment")

One row per answered, de-duplicated pair (``gpt2chat.corpus.data.load_records``), in file order. The columns:

    pair_id          unique id, "<subset>/<file name>-<pid>"
    question         the question, whitespace collapsed
    answer           the NIH answer, whitespace collapsed
    type             question type ("information", "symptoms", "treatment", …)
    focus            the disease, drug or topic, spelled as in the source (``data.focus_key`` folds case)
    source           the NIH source ("GARD", "GHR", "CancerGov", …)
    subset           the upstream folder ("2_GARD_QA")
    url              the NIH page the pair comes from
    split            "train", "validation" or "test": the split by focus of ``gpt2chat.corpus.splits``
    answer_words     answer length in whitespace-separated words
    question_tokens  question length in GPT-2 BPE tokens
    answer_tokens    answer length in GPT-2 BPE tokens
    example_tokens   length of the training text ``Question: …\\nAnswer: …<|endoftext|>`` in GPT-2 tokens

The token columns are nullable integers, <NA> when the table is built without a tokenizer (``tokens=False``:
no TensorFlow start-up), so the schema is the same either way.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from gpt2chat.corpus.data import LoadReport, QAPair, load_records
from gpt2chat.modeling.prompt import training_example
from gpt2chat.corpus.splits import split_of

COLUMNS = ("pair_id", "question", "answer", "type", "focus", "source", "subset", "url", "split", "answer_words",
           "question_tokens", "answer_tokens", "example_tokens")
TOKEN_COLUMNS = ("question_tokens", "answer_tokens", "example_tokens")


def count_tokens(texts: Sequence[str], tokenizer, *, batch_size: int = 512, progress: bool = False,
                 desc: str = "tokenizing") -> list[int]:
    """GPT-2 token count of each text, tokenized in batches (one progress-bar step per batch)."""
    starts: Iterable[int] = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch")
    return [len(ids) for start in starts for ids in tokenizer(list(texts[start : start + batch_size]))]


def records_frame(records: Sequence[QAPair], *, tokenizer=None, batch_size: int = 512, progress: bool = False):
    """The DataFrame of ``records`` with the columns above; ``tokenizer=None`` leaves the token columns <NA>."""
    import pandas as pd

    frame = pd.DataFrame({
        "pair_id": [r.pair_id for r in records],
        "question": [r.question for r in records],
        "answer": [r.answer for r in records],
        "type": [r.question_type for r in records],
        "focus": [r.focus for r in records],
        "source": [r.source for r in records],
        "subset": [r.subset for r in records],
        "url": [r.url for r in records],
        "split": [split_of(r) for r in records],
        "answer_words": [len(r.answer.split()) for r in records],
    }, columns=list(COLUMNS[:10])).astype({"answer_words": "int64"})
    texts = {
        "question_tokens": (frame["question"].tolist(), "tokenizing questions"),
        "answer_tokens": (frame["answer"].tolist(), "tokenizing answers"),
        "example_tokens": ([training_example(r.question, r.answer) for r in records], "tokenizing examples"),
    }
    for column, (values, desc) in texts.items():
        counts = (count_tokens(values, tokenizer, batch_size=batch_size, progress=progress, desc=desc)
                  if tokenizer is not None else [pd.NA] * len(records))
        frame[column] = pd.array(counts, dtype="Int64")
    return frame


def to_dataset(frame):
    """The DataFrame as a ``datasets.Dataset`` (Arrow-backed, same columns; <NA> becomes null)."""
    import datasets

    return datasets.Dataset.from_pandas(frame, preserve_index=False)


@dataclasses.dataclass
class MedQuADTable:
    frame: object  # pandas.DataFrame
    dataset: object  # datasets.Dataset
    report: LoadReport  # what the loader kept and dropped per source


def load_table(data: str | None = None, *, limit_files: int | None = None, tokens: bool = True,
               progress: bool = False) -> MedQuADTable:
    """Load MedQuAD and return its answered pairs as a DataFrame and a Dataset with one schema (see above).

    ``limit_files`` reads only the first N files of each subset; ``tokens=False`` skips the GPT-2 token counts."""
    records, report = load_records(data, limit_files=limit_files, progress=progress)
    tokenizer = None
    if tokens:
        from gpt2chat.modeling.tokenizer import gpt2_tokenizer

        tokenizer = gpt2_tokenizer()
    frame = records_frame(records, tokenizer=tokenizer, progress=progress)
    return MedQuADTable(frame=frame, dataset=to_dataset(frame), report=report)
