"""A training run's data: the rows it trains and validates on (MedQuAD pairs with their references, or general
English text, plus sentence-selection rows), and the batches ``fit`` is fed from them."""

from __future__ import annotations

import collections
import functools

import numpy as np

from gpt2chat.modeling import distribute, process_group
from gpt2chat.modeling.rundir import RunDirectory
from gpt2chat.modeling.training_config import TrainConfig


def training_batches(packed, config: TrainConfig, first_step: int, replicas: int = 1):
    """The run's batches from ``first_step`` on: rows in a fresh seeded order every pass over the data, and batch k
    a function of k alone, so a resumed run sees exactly the batches of an uninterrupted one. (Counting epochs in
    the dataset broke that: Keras calls on_epoch_end once before training, and fit's shuffle reorders each epoch's
    batches with Python's random state, which no checkpoint holds.) With a Keras distribution over ``replicas``
    (JAX), each process yields only its own rows of batch k (``process_group.local_part``)."""
    import keras

    class PackedBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.packed = packed

        def __len__(self):
            return config.steps - first_step

        def _row_indices(self, step: int) -> np.ndarray:
            per_pass = len(self.packed.rows) // config.batch_size
            data_pass, position = divmod(step, per_pass)
            order = np.random.default_rng([config.seed, data_pass]).permutation(len(self.packed.rows))
            return order[position * config.batch_size : (position + 1) * config.batch_size]

        def __getitem__(self, index):
            batch = self.packed.select(self._row_indices(first_step + index)).batch
            return process_group.local_part(batch, replicas) if replicas > 1 else batch

    return PackedBatches()


def local_validation_batches(validation, config: TrainConfig, replicas: int):
    """The validation rows in global batches of --batch-size, each process's part of each (JAX distribution)."""
    import keras

    rows = np.arange(len(validation.rows))
    starts = range(0, len(rows), config.batch_size)

    class ValidationBatches(keras.utils.PyDataset):
        def __len__(self):
            return len(starts)

        def __getitem__(self, index):
            start = starts[index]
            return process_group.local_part(validation.select(rows[start : start + config.batch_size]).batch,
                                            replicas)

    return ValidationBatches()


def validation_batches(strategy, validation, config: TrainConfig):
    """The validation rows in global batches of --batch-size, distributed like the training batches."""
    rows = np.arange(len(validation.rows))
    batches = [validation.select(rows[start : start + config.batch_size]).batch
               for start in range(0, len(rows), config.batch_size)]  # as many as validation_steps in train._train_in
    return distribute.distributed_batches(strategy, batches, len(batches), repeat=True)


def prepare_data(config: TrainConfig, tokenizer, run: RunDirectory, *, writes: bool = True):
    """(training rows, validation rows), each with answer-token weights; references are retrieved from one index
    over the training and validation pairs (``reference_index``: built once per process for the same pairs).
    ``writes``: save the split in the run directory (process 0 of a multi-process run only)."""
    from gpt2chat.corpus.data import load_records
    from gpt2chat.corpus.splits import save_split, split_records
    from gpt2chat.modeling.tokens import grounded_examples, pack_examples, tokenize_examples

    records, report = load_records(config.data, progress=True)
    splits = split_records(records)
    if writes:
        save_split(splits, run.split)
    train_records = splits["train"][: config.max_records] if config.max_records else splits["train"]
    print(f"{len(records)} answered pairs; training on {len(train_records)}, validating on "
          f"{len(splits['validation'])} (split by focus{f', saved to {run.split}' if writes else ''})", flush=True)
    grounding = config.grounding()
    index = reference_index((*train_records, *splits["validation"]))
    packed = {}
    for name, pairs, seed in (("train", train_records, config.seed),
                              ("validation", splits["validation"], config.seed + 1)):
        examples = grounded_examples(pairs, index, grounding, seed=seed)
        tokenized = tokenize_examples(examples, tokenizer, grounding.answer_tokens)
        packed[name] = pack_examples(tokenized, config.sequence_length)
        kinds = collections.Counter(e.reference for e in examples)
        print(f"{name}: {len(tokenized)} examples ({len(examples) - len(tokenized)} dropped: first sentence over "
              f"{grounding.answer_tokens} tokens); references {dict(kinds)}; "
              f"{packed[name].num_answer_tokens:,} answer tokens in {len(packed[name].rows)} rows", flush=True)
        # Validation stays answer tokens only: its loss picks the checkpoint and is the reported perplexity, and the
        # selection labels (a few choices each) would pull it down. The selector is measured by the quality gate.
        if config.selection_fraction and name == "train":
            packed[name] = with_selection_rows(packed[name], pairs, tokenizer, config, seed=seed)
    rows = np.random.default_rng(config.seed).permutation(len(packed["validation"].rows))[: config.eval_rows]
    return packed["train"], packed["validation"].select(np.sort(rows))


@functools.lru_cache(maxsize=1)
def reference_index(pairs: tuple):
    """The retrieval index the references are drawn from, built from ``pairs`` (equal pairs: equal index) and kept
    for the next run in this process on the same pairs: a sweep's variants share their data, and a build took
    10-13 s on the shared 2 cores (300 training pairs plus the validation split, small sample or whole MedQuAD)."""
    from gpt2chat.search.retrieval import RetrievalIndex

    return RetrievalIndex.build(pairs, understand=False)  # references come from ``search``


def prepare_generic_data(config: TrainConfig, tokenizer, run: RunDirectory, *, writes: bool = True):
    """(training rows, validation rows) of general English text (``gpt2chat.corpus.generic``): every token counts,
    no split.json (the corpus splits itself); --max-records keeps the first N training texts."""
    from gpt2chat.corpus.generic import read_texts
    from gpt2chat.modeling.tokens import pack

    train_texts = read_texts("train", config.data, config.max_records)
    packed = {"train": pack(train_texts, tokenizer, config.sequence_length),
              "validation": pack(read_texts("validation", config.data), tokenizer, config.sequence_length)}
    print(f"general English (WordNet): {len(train_texts)} training texts, {packed['train'].num_tokens:,} tokens in "
          f"{len(packed['train'].rows)} rows; validation {len(packed['validation'].rows)} rows", flush=True)
    rows = np.random.default_rng(config.seed).permutation(len(packed["validation"].rows))[: config.eval_rows]
    return packed["train"], packed["validation"].select(np.sort(rows))


def with_selection_rows(packed, records, tokenizer, config: TrainConfig, *, seed: int):
    """``packed`` plus sentence-selection rows of ``records``' pages, so that they make ``selection_fraction`` of
    the rows (all of them when the pages have fewer)."""
    from gpt2chat.modeling.selection import selection_examples, selection_rows
    from gpt2chat.modeling.tokens import PackedTokens

    selection = selection_rows(selection_examples(records), tokenizer, config.sequence_length, seed=seed)
    wanted = round(len(packed.rows) * config.selection_fraction / (1 - config.selection_fraction))
    chosen = np.random.default_rng(seed).permutation(len(selection.rows))[:wanted]
    selection = selection.select(np.sort(chosen))
    selection = PackedTokens(selection.rows, selection.weights * config.selection_weight, selection.targets)
    share = len(selection.rows) / (len(selection.rows) + len(packed.rows))
    print(f"  + {len(selection.rows)} sentence-selection rows ({int((selection.weights > 0).sum()):,} labels, "
          f"weight {config.selection_weight:g} each): {share:.0%} of the rows", flush=True)
    return PackedTokens.concatenate([packed, selection])
