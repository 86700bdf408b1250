"""The pairs table: one schema for the DataFrame and the Dataset, values matching the loaded records."""

from __future__ import annotations

import pytest

from gpt2chat.modeling import dataset
from gpt2chat.corpus.data import load_records
from gpt2chat.modeling.prompt import training_example
from gpt2chat.corpus.splits import split_of

LIMIT_FILES = 2


@pytest.fixture(scope="module")
def table(medquad_dir):
    return dataset.load_table(medquad_dir, limit_files=LIMIT_FILES)


def test_frame_and_dataset_share_one_schema_and_rows(table):
    frame, data = table.frame, table.dataset
    assert list(frame.columns) == list(dataset.COLUMNS) == data.column_names
    assert len(frame) == len(data) == sum(table.report.kept.values()) > 0
    assert data.to_pandas().equals(frame.astype({c: "int64" for c in dataset.TOKEN_COLUMNS}).astype(
        data.to_pandas().dtypes.to_dict()))


def test_rows_match_the_records(table, medquad_dir):
    from gpt2chat.modeling.tokenizer import gpt2_tokenizer

    records, _ = load_records(medquad_dir, limit_files=LIMIT_FILES)
    frame = table.frame
    assert frame["pair_id"].tolist() == [r.pair_id for r in records]
    assert frame["type"].tolist() == [r.question_type for r in records]
    assert frame["split"].tolist() == [split_of(r) for r in records]
    assert frame["answer_words"].tolist() == [len(r.answer.split()) for r in records]
    tokenizer = gpt2_tokenizer()
    for i in (0, len(records) // 2, len(records) - 1):
        record, row = records[i], frame.iloc[i]
        assert row["answer_tokens"] == len(tokenizer(record.answer))
        assert row["question_tokens"] == len(tokenizer(record.question))
        assert row["example_tokens"] == len(tokenizer(training_example(record.question, record.answer)))


def test_without_tokens_the_schema_is_the_same(table, medquad_dir):
    records, _ = load_records(medquad_dir, limit_files=1)
    frame = dataset.records_frame(records)
    assert list(frame.columns) == list(dataset.COLUMNS)
    assert frame[list(dataset.TOKEN_COLUMNS)].isna().all().all()
    assert (frame.dtypes == table.frame.dtypes).all()
    assert dataset.to_dataset(frame).column_names == list(dataset.COLUMNS)
