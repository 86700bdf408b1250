"""Fine-tune a Keras-Hub GPT-2 preset, or train a GPT-2 from scratch, on MedQuAD question-answer pairs.

    python -m gpt2chat.train                                   # the quick-start recipe into models/default
    python -m gpt2chat.train --recipe tiny --output /tmp/tiny   # seconds: tests and notebooks
    python -m gpt2chat.train --recipe generic                  # the same budget on general English (WordNet)
    python -m gpt2chat.train --recipe from-generic             # then MedQuAD, starting from models/generic
    python -m gpt2chat.train --recipe finetune-base --lora-rank 8 --output models/gpt2-medquad   (needs network)
    python -m gpt2chat.train --devices 2        # data-parallel on 2 GPUs (README: "Training at scale")
    KERAS_BACKEND=jax python -m gpt2chat.train --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0
                                               # one of two machines (the other: --process-id 1)

Recipes are data: ``gpt2chat/modeling/recipes/<name>.json`` names the settings it changes from the quick-start
recipe, and any flag overrides the recipe.

The output directory is a Keras-Hub preset (``GPT2CausalLM.from_preset(output)`` loads the chatbot model) with
``training_config.json``, ``metrics.json`` and ``split.json`` beside it. A run that is killed resumes from its last
checkpoint when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gpt2chat import settings
from gpt2chat.modeling import distribute, process_group
from gpt2chat.modeling.model import SIZES
from gpt2chat.modeling.rundir import RunDirectory
from gpt2chat.modeling.training_callbacks import TrainingDiverged, checkpointing, restore_seed_states

log = logging.getLogger(__name__)


RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
CORPORA = ("medquad", "generic")
DEFAULT_RECIPE = "quickstart"


def recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPES_DIR.glob("*.json"))


def read_recipe(name: str) -> dict:
    """A recipe's settings (``recipes/<name>.json``); what it does not name keeps the quick-start value."""
    path = RECIPES_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(recipe_names())}")
    values = json.loads(path.read_text(encoding="utf-8"))
    values.pop("description", None)
    return values


_QUICKSTART = read_recipe(DEFAULT_RECIPE)


def _setting(name: str, help: str):
    """A training setting whose default is the quick-start recipe's value: the numbers live in the recipe file."""
    return dataclasses.field(default=_QUICKSTART[name], metadata={"help": help})


@dataclasses.dataclass
class TrainConfig:
    output: str = dataclasses.field(default=str(settings.DEFAULT_MODEL_DIR),
                                    metadata={"help": f"run and preset directory (default: {settings.DEFAULT_MODEL_DIR})"})
    data: str | None = dataclasses.field(
        default=None, metadata={"help": f"MedQuAD directory (default: ${settings.MEDQUAD_ENV} or ../shared/medquad)"})
    recipe: str = dataclasses.field(default=DEFAULT_RECIPE, metadata={"help": "the recipe these settings came from"})
    corpus: str = dataclasses.field(default="medquad", metadata={
        "help": "medquad (question-answer pairs) or generic (general English text, gpt2chat.corpus.generic; "
                "--data is then its WordNet directory)"})
    preset: str | None = _setting("preset", "Keras-Hub preset name (e.g. gpt2_base_en) or local preset directory; "
                                            "none trains from scratch")
    size: str = _setting("size", f"layout when training from scratch: {', '.join(SIZES)}")
    sequence_length: int = _setting("sequence_length", "tokens per training row")
    batch_size: int = _setting("batch_size", "rows per step")
    steps: int = _setting("steps", "optimizer steps in the whole run")
    eval_interval: int = _setting("eval_interval", "steps between validation, checkpoint and log line")
    eval_rows: int = _setting("eval_rows", "validation rows (of sequence_length tokens) per evaluation")
    learning_rate: float = _setting("learning_rate", "peak learning rate (linear warm-up, then cosine decay to 10%)")
    warmup_steps: int = _setting("warmup_steps", "steps of linear warm-up")
    weight_decay: float = _setting("weight_decay", "AdamW weight decay on weight matrices")
    dropout: float = _setting("dropout", "dropout rate (from scratch only)")
    lora_rank: int = _setting("lora_rank", "train rank-R LoRA adapters instead of all weights (pretrained presets)")
    precision: str = _setting("precision", "float32, mixed_bfloat16 or mixed_float16")
    grounded_fraction: float = _setting("grounded_fraction", "share of training examples that carry a reference "
                                                             "passage")
    sibling_fraction: float = _setting("sibling_fraction", "share of grounded examples whose reference is another "
                                                           "pair's passage (same focus when retrieval finds one)")
    answer_sentences: int = _setting("answer_sentences", "target answer: at most this many leading sentences")
    answer_tokens: int = _setting("answer_tokens", "target answer: at most this many tokens, <|endoftext|> included")
    selection_fraction: float = _setting("selection_fraction", "share of training rows that teach sentence "
                                                               "selection (gpt2chat.modeling.selection)")
    selection_weight: float = _setting("selection_weight", "loss weight of each selection label (an answer token "
                                                           "weighs 1)")
    max_records: int | None = _setting("max_records", "train on the first N training pairs only")
    devices: int = _setting("devices", "data-parallel replicas on this machine (GPUs; on a CPU-only machine, "
                                       "logical CPU devices); --batch-size stays the global batch")
    model_parallel: int = _setting("model_parallel", "split every weight matrix over this many of the --devices "
                                                     "(JAX backend only: KERAS_BACKEND=jax)")
    seed: int = dataclasses.field(default=1337, metadata={"help": "seed for initialisation, data order and "
                                                                  "grounding choice"})

    @classmethod
    def from_recipe(cls, name: str = DEFAULT_RECIPE, **overrides) -> "TrainConfig":
        """The named recipe's settings, then ``overrides`` (output, data, seed or any setting). A recipe's own
        ``output`` and local ``preset`` paths are relative to the home directory, where models/ is."""
        values = read_recipe(name)
        for key in ("output", "preset"):
            if values.get(key) and "/" in values[key] and "://" not in values[key]:
                values[key] = str(settings.HOME / values[key])
        return cls(**{"recipe": name, **values, **overrides})

    def validate(self) -> None:
        if self.corpus not in CORPORA:
            raise ValueError(f"--corpus must be one of {', '.join(CORPORA)}")
        if self.preset is None and self.size not in SIZES:
            raise ValueError(f"--size must be one of {', '.join(SIZES)}")
        for name in ("sequence_length", "batch_size", "steps", "eval_interval", "eval_rows"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        if self.steps % self.eval_interval:
            raise ValueError("--steps must be a multiple of --eval-interval (checkpoints fall on evaluations)")
        if self.warmup_steps >= self.steps:
            raise ValueError("--warmup-steps must be smaller than --steps")
        if self.precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
            raise ValueError("--precision must be float32, mixed_bfloat16 or mixed_float16")
        if self.max_records is not None and self.max_records < 1:
            raise ValueError("--max-records must be at least 1 (leave it out to train on every pair)")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError("--learning-rate must be a positive number")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError("--weight-decay must be zero or a positive number")
        if not 0 <= self.dropout < 1:
            raise ValueError("--dropout must be at least 0 and below 1")
        if self.devices < 1 or self.model_parallel < 1 or self.devices % self.model_parallel:
            raise ValueError("--devices must be at least 1, and a multiple of --model-parallel")
        if self.batch_size % (self.devices // self.model_parallel):
            raise ValueError(f"--batch-size {self.batch_size} (the global batch) must split evenly over "
                             f"the {self.devices // self.model_parallel} data-parallel replicas of --devices "
                             f"{self.devices}")
        if self.warmup_steps < 0 or self.lora_rank < 0:
            raise ValueError("--warmup-steps and --lora-rank cannot be negative")
        output = Path(self.output).expanduser()
        existing = next(path for path in (output, *output.parents) if path.exists())
        if not existing.is_dir():
            raise ValueError(f"--output {self.output}: {existing} is a file, not a directory")
        if not 0 <= self.selection_fraction < 1:
            raise ValueError("--selection-fraction must be at least 0 and below 1")
        if self.selection_weight <= 0:
            raise ValueError("--selection-weight must be above 0")
        self.grounding()  # raises on out-of-range grounding settings

    def grounding(self):
        from gpt2chat.modeling.tokens import Grounding

        return Grounding(grounded_fraction=self.grounded_fraction, sibling_fraction=self.sibling_fraction,
                         answer_sentences=self.answer_sentences, answer_tokens=self.answer_tokens)


def _batches(packed, config: TrainConfig, first_step: int, replicas: int = 1):
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


def _local_validation_batches(validation, config: TrainConfig, replicas: int):
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


def _validation_batches(strategy, validation, config: TrainConfig):
    """The validation rows in global batches of --batch-size, distributed like the training batches."""
    rows = np.arange(len(validation.rows))
    batches = [validation.select(rows[start : start + config.batch_size]).batch
               for start in range(0, len(rows), config.batch_size)]  # as many as validation_steps in _train_in
    return distribute.distributed_batches(strategy, batches, len(batches), repeat=True)


def _load_or_build(config: TrainConfig):
    from gpt2chat.modeling.model import build_causal_lm, load_preset

    if config.preset:
        causal_lm = load_preset(config.preset)
        if config.lora_rank:
            causal_lm.backbone.enable_lora(config.lora_rank)
    else:
        causal_lm = build_causal_lm(config.size, config.sequence_length, dropout=config.dropout)
    limit = causal_lm.backbone.max_sequence_length
    if config.sequence_length > limit:
        raise ValueError(f"--sequence-length {config.sequence_length} exceeds the model's context of {limit}")
    causal_lm.preprocessor.sequence_length = max(causal_lm.preprocessor.sequence_length, config.sequence_length)
    return causal_lm


def build_training_model(config: TrainConfig, strategy=None):
    """(causal_lm, training_model): the task that is saved as the preset, and the model that ``fit`` trains,
    with their variables replicated by ``strategy`` when one is given (``distribute.strategy``).

    The training model is a plain functional model over the same layers: Keras' own fit feeds NumPy batches on
    every backend, whereas Keras-Hub's task fit routes them through tf.data or grain."""
    import keras

    with strategy.scope() if strategy else contextlib.nullcontext():
        causal_lm = _load_or_build(config)
        training_model = keras.Model(causal_lm.inputs, causal_lm.outputs, name="gpt2_training")
        compile_for_training(training_model, config)
    return causal_lm, training_model


def compile_for_training(training_model, config: TrainConfig) -> None:
    """AdamW, the cosine schedule and the per-answer-token loss; call it in the strategy's scope if there is one.
    The learning rate belongs to the global batch (--batch-size), which stays the same on any number of devices,
    so nothing is rescaled: N devices take the steps one device would."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.steps - config.warmup_steps,
        alpha=0.1,
    )
    replicated = distribute.replicas() > 1
    adamw = distribute.summed_before_clipping(keras.optimizers.AdamW) if replicated else keras.optimizers.AdamW
    optimizer = adamw(
        learning_rate=schedule, weight_decay=config.weight_decay, beta_2=0.95, global_clipnorm=1.0
    )
    # Decaying norms, biases and embeddings hurts small models; GPT-2 practice decays matrices only.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    training_model.compile(
        optimizer=optimizer,
        loss=_answer_token_cross_entropy()(),
        weighted_metrics=[_answer_token_loss()()],
        jit_compile=not replicated,  # see gpt2chat.modeling.distribute: XLA cannot compile a multi-device step
    )


def _weighted_cross_entropy(y_true, y_pred, sample_weight):
    """(cross-entropy summed over weighted (answer) tokens, the sum of their weights)."""
    import keras

    losses = keras.losses.sparse_categorical_crossentropy(y_true, keras.ops.cast(y_pred, "float32"),
                                                          from_logits=True)
    weights = keras.ops.ones_like(losses) if sample_weight is None else keras.ops.cast(sample_weight, "float32")
    return keras.ops.sum(losses * weights), keras.ops.sum(weights)


def _answer_token_cross_entropy():
    import keras

    class AnswerTokenCrossEntropy(keras.losses.Loss):
        """The training loss: cross-entropy summed over the answer tokens of the whole batch / their number.

        Keras' default reduction divides a sample-weighted loss by every position, so the answer-only loss would
        be scaled by the share of answer tokens (~0.2) and the learning rate with it; and on several replicas it
        averages each replica's own mean. Here each replica returns its share of the global mean (its sum over
        the batch's answer-token count, summed over replicas): Keras sums the replicas' gradients, which then
        are the gradient of the whole batch's loss, as on one device."""

        def __init__(self, name="answer_token_cross_entropy", **kwargs):
            super().__init__(name=name, **kwargs)

        def __call__(self, y_true, y_pred, sample_weight=None):
            total, count = _weighted_cross_entropy(y_true, y_pred, sample_weight)
            return total / keras.ops.maximum(distribute.global_sum(count), 1.0)

    return AnswerTokenCrossEntropy


def _answer_token_loss():
    import keras

    class AnswerTokenLoss(keras.metrics.Metric):
        """Cross-entropy summed over weighted (answer) tokens / their number, over a whole epoch or evaluation:
        exact, where the loss Keras logs is a mean of per-batch means. Its variables are summed over replicas
        when read (Keras metric variables are on-read sums), so it is exact on several devices too."""

        def __init__(self, name="answer_loss", **kwargs):
            super().__init__(name=name, **kwargs)
            self.total = self.add_variable(shape=(), initializer="zeros", name="total")
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true, y_pred, sample_weight=None):
            total, count = _weighted_cross_entropy(y_true, y_pred, sample_weight)
            self.total.assign_add(total)
            self.count.assign_add(count)

        def result(self):
            return self.total / keras.ops.maximum(self.count, 1.0)

    return AnswerTokenLoss


def prepare_data(config: TrainConfig, tokenizer, run: RunDirectory, *, writes: bool = True):
    """(training rows, validation rows), each with answer-token weights; references are retrieved from one index
    over the training and validation pairs, built once per run (~5 s for 15,600 pairs). ``writes``: save the
    split in the run directory (process 0 of a multi-process run only)."""
    from gpt2chat.corpus.data import load_records
    from gpt2chat.search.retrieval import RetrievalIndex
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
    index = RetrievalIndex.build([*train_records, *splits["validation"]])
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


# What a run writes at the top of its directory: the Keras-Hub preset's files and the run's own.
RUN_WRITES = ("config.json", "metadata.json", "model.weights.h5", "preprocessor.json", "task.json", "tokenizer.json",
              "assets", "training_config.json", "metrics.json", "split.json", "checkpoints", "openvino")


RUN_LEFTOVERS = {"checkpoints", "split.json", "train.log"}


def check_output(output: str) -> None:
    """Refuse a non-empty --output that is not a training run, naming what training would overwrite there: it
    replaced 8 of a user's 12 files (config.json, metrics.json, tokenizer.json, ...) without a word (issue 23).
    A run of other settings is refused by ``RunDirectory.prepare``; a run of the same settings resumes."""
    from gpt2chat.modeling.rundir import is_run_dir

    root = Path(output).expanduser()
    if not root.is_dir() or is_run_dir(root):
        return
    present = sorted(entry.name for entry in root.iterdir())
    # What a run leaves before its first checkpoint (its settings file is removed when it fails there) and the app's
    # log of its background trainer: the folder is that run's, and the corrected command must not be refused.
    if set(present) <= RUN_LEFTOVERS:
        return
    if present:
        clashes = [name for name in present if name in RUN_WRITES]
        raise ValueError(
            f"--output {output} holds {len(present)} entries and is not a training run; training would "
            + (f"overwrite {', '.join(clashes)}" if clashes else "write its files among them")
            + ". Choose an empty or new folder, or add --force to write there anyway")


def train(config: TrainConfig, *, force: bool = False,
          processes: process_group.Processes = process_group.Processes()) -> dict:
    """Run (or resume) training; returns the summary written to metrics.json. With several ``processes`` (JAX;
    one per machine, each on its --devices), every process runs this with the same settings and only process 0
    reads or writes --output.

    The settings, the data path and the model (a preset that does not load) are checked before the run directory
    is written, and a run that fails before its first checkpoint takes its settings file with it: either way the
    corrected command is not refused as "a run with other settings". A non-empty folder that is not a run is
    refused unless ``force`` (``check_output``)."""
    config.validate()
    if not force and processes.writes:
        check_output(config.output)
    if config.corpus == "generic":
        from gpt2chat.corpus.generic import corpus_dir

        corpus_dir(config.data)
    else:
        from gpt2chat.corpus.data import xml_files

        xml_files(settings.medquad_dir(config.data))
    try:
        # Before the backend fixes its devices.
        process_group.join(processes)
        strategy = distribute.setup(config.devices, config.model_parallel, settings.tf_config())
    except distribute.DistributionError as error:
        raise ValueError(str(error)) from None
    import keras

    replicas = (strategy.num_replicas_in_sync if strategy
                else config.devices * processes.count // config.model_parallel)
    if config.batch_size % replicas:
        raise ValueError(f"--batch-size {config.batch_size} (the global batch) must split evenly over the "
                         f"{replicas} replicas of the cluster")
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    causal_lm, training_model = build_training_model(config, strategy)
    run = RunDirectory(config.output)
    fresh = processes.writes and run.training_config() is None
    try:
        if processes.writes:
            run.prepare(dataclasses.asdict(config))
    except OSError as error:
        raise ValueError(f"cannot write the run directory {run.root}: {error.strerror or error}") from None
    try:
        with strategy.scope() if strategy else contextlib.nullcontext():
            return _train_in(run, config, causal_lm, training_model, strategy, processes, replicas)
    except BaseException:
        if fresh and run.load_state() is None:
            run.config.unlink(missing_ok=True)
        raise


def _train_in(run: RunDirectory, config: TrainConfig, causal_lm, training_model, strategy,
              processes: process_group.Processes = process_group.Processes(), replicas: int = 1) -> dict:
    import keras

    prepare = prepare_generic_data if config.corpus == "generic" else prepare_data
    train_rows, validation = prepare(config, causal_lm.preprocessor.tokenizer, run, writes=processes.writes)
    if len(train_rows.rows) < config.batch_size:
        raise ValueError(f"only {len(train_rows.rows)} training rows, fewer than --batch-size {config.batch_size}")

    process_group.check_same_run(processes, dataclasses.asdict(config), train_rows, validation)
    total_epochs = config.steps // config.eval_interval
    state = process_group.state_from_first(run.load_state() if processes.writes else None, processes)
    first_epoch, history, best = 0, [], float("inf")
    if state:
        training_model.optimizer.build(training_model.trainable_variables)
        with process_group.weights_everywhere(run.last_weights, processes) as weights:
            training_model.load_weights(weights)
        first_epoch, history, best = state["epoch"] + 1, state["history"], state["best_val_loss"]
        if "seed_states" in state:  # absent from checkpoints written before it was saved
            restore_seed_states(training_model, state["seed_states"])
        print(f"resuming from step {first_epoch * config.eval_interval} (checkpoint in {run.checkpoints})",
              flush=True)
    print(f"{train_rows.num_tokens:,} training tokens in {len(train_rows.rows)} rows; "
          f"{causal_lm.backbone.count_params():,} parameters; {config.steps} steps of "
          f"{config.batch_size}x{config.sequence_length} tokens", flush=True)

    if first_epoch < total_epochs:
        started = time.perf_counter()
        keras_distributed = strategy is None and replicas * config.model_parallel > 1  # JAX
        batches = _batches(train_rows, config, first_epoch * config.eval_interval,
                           replicas if keras_distributed else 1)
        validation_data, validation_batch_size, validation_steps = validation.batch, config.batch_size, None
        if keras_distributed:
            validation_data, validation_batch_size = _local_validation_batches(validation, config, replicas), None
            print(f"{type(keras.distribution.distribution()).__name__} over {replicas * config.model_parallel} "
                  f"devices in {processes.count} process(es): {replicas} data-parallel replicas of "
                  f"{config.batch_size // replicas} rows per step", flush=True)
        if strategy:
            batches = distribute.distributed_batches(strategy, batches, len(batches))
            validation_steps = math.ceil(len(validation.rows) / config.batch_size)
            validation_data, validation_batch_size = _validation_batches(strategy, validation, config), None
            print(f"data-parallel over {strategy.num_replicas_in_sync} replicas "
                  f"({type(strategy).__name__}): {config.batch_size // strategy.num_replicas_in_sync} rows each "
                  f"per step", flush=True)
        training_model.fit(
            batches,
            steps_per_epoch=config.eval_interval,
            shuffle=False,  # the order is _batches' own, seeded by step
            validation_data=validation_data,
            validation_batch_size=validation_batch_size,
            validation_steps=validation_steps,
            epochs=total_epochs,
            initial_epoch=first_epoch,
            callbacks=[checkpointing(run, config, history, best, writes=processes.writes)],
            verbose=1 if processes.writes else 0,
        )
        wall = time.perf_counter() - started
    else:
        wall = 0.0
        print("training already complete; writing the preset again", flush=True)

    with process_group.weights_everywhere(run.best_weights, processes) as weights:
        if weights is None:
            raise TrainingDiverged(f"no best checkpoint in {run.checkpoints}: delete {run.root} and train again")
        training_model.load_weights(weights)
    if processes.writes:
        causal_lm.save_to_preset(str(run.root))
    else:  # every process saves alike (see training_callbacks): the others into a folder thrown away
        with tempfile.TemporaryDirectory(prefix="gpt2chat-discarded-") as folder:
            causal_lm.save_to_preset(folder)
    best_entry = min(history, key=lambda e: e["val_loss"])
    summary = {
        "parameters": int(causal_lm.backbone.count_params()),
        "training_tokens_available": train_rows.num_tokens,
        "training_answer_tokens_available": train_rows.num_answer_tokens,
        "tokens_seen": config.steps * config.batch_size * config.sequence_length,
        "best_step": best_entry["step"],
        "best_val_loss": best_entry["val_loss"],
        "best_val_perplexity": best_entry["val_perplexity"],
        "median_tokens_per_second": float(np.median([e["tokens_per_second"] for e in history])),
        "wall_seconds_this_session": wall,
        "backend": keras.config.backend(),
        "replicas": replicas,
        "model_parallel": config.model_parallel,
        "processes": processes.count,
        "history": history,
    }
    if not processes.writes:
        print(f"process {processes.index} of {processes.count} done; process 0 saved the preset", flush=True)
        return summary
    RunDirectory.atomic_write_json(summary, run.metrics)
    print(f"saved preset to {run.root} (best val perplexity {summary['best_val_perplexity']:.1f} "
          f"at step {summary['best_step']})", flush=True)
    return summary


_ARGUMENT_TYPES = {"max_records": int}  # settings whose default (None) does not tell their type; others: str


def parse_args(argv: list[str] | None) -> TrainConfig:
    """The recipe (``--recipe``, default quickstart), then any setting given as a flag (--force is ``main``'s)."""
    parser = argparse.ArgumentParser(
        prog="python -m gpt2chat.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, choices=recipe_names(),
                        help="named settings in gpt2chat/modeling/recipes/ (default: %(default)s); flags below "
                             "override them")
    parser.add_argument("--from-scratch", action="store_true",
                        help="random initialisation even if the recipe names a preset")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty --output that is not a training run (its files may be replaced)")
    process_group.add_flags(parser)
    for field in dataclasses.fields(TrainConfig):
        if field.name == "recipe":
            continue
        default = f" (quickstart: {_QUICKSTART[field.name]})" if field.name in _QUICKSTART else ""
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", type=_ARGUMENT_TYPES.get(field.name, str if field.default is None else type(field.default)),
            default=argparse.SUPPRESS, choices=sorted(SIZES) if field.name == "size" else None,
            help=field.metadata["help"].replace("%", "%%") + default,
        )
    args = vars(parser.parse_args(argv))
    recipe, from_scratch, _ = args.pop("recipe"), args.pop("from_scratch"), args.pop("force")
    for name in process_group.FLAGS:
        args.pop(name, None)
    if from_scratch:
        if args.get("preset"):
            parser.error("--from-scratch and --preset exclude each other")
        args["preset"] = None
    return TrainConfig.from_recipe(recipe, **args)


_FORCE = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
_FORCE.add_argument("--force", action="store_true")


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        processes = process_group.from_argv(argv)
    except distribute.DistributionError as error:
        raise ValueError(str(error)) from None
    train(config, force=_FORCE.parse_known_args(argv)[0].force, processes=processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
