"""Fine-tune a Keras-Hub GPT-2 preset, or train a GPT-2 from scratch, on MedQuAD question-answer pairs.

    python -m gpt2chat.train                                   # the quick-start recipe into models/default
    python -m gpt2chat.train --recipe tiny --output /tmp/tiny   # seconds: tests and notebooks
    python -m gpt2chat.train --recipe finetune-base --lora-rank 8 --output models/gpt2-medquad   (needs network)

Recipes are data: ``gpt2chat/modeling/recipes/<name>.json`` names the settings it changes from the quick-start
recipe, and any flag overrides the recipe.

The output directory is a Keras-Hub preset (``GPT2CausalLM.from_preset(output)`` loads the chatbot model) with
``training_config.json``, ``metrics.json`` and ``split.json`` beside it. A run that is killed resumes from its last
checkpoint when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from gpt2chat import settings
from gpt2chat.modeling.model import SIZES
from gpt2chat.modeling.rundir import RunDirectory
from gpt2chat.modeling.training_callbacks import TrainingDiverged, checkpointing, restore_seed_states

log = logging.getLogger(__name__)


RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
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
    max_records: int | None = _setting("max_records", "train on the first N training pairs only")
    seed: int = dataclasses.field(default=1337, metadata={"help": "seed for initialisation, data order and "
                                                                  "grounding choice"})

    @classmethod
    def from_recipe(cls, name: str = DEFAULT_RECIPE, **overrides) -> "TrainConfig":
        """The named recipe's settings, then ``overrides`` (output, data, seed or any setting)."""
        return cls(**{"recipe": name, **read_recipe(name), **overrides})

    def validate(self) -> None:
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
        if self.warmup_steps < 0 or self.lora_rank < 0:
            raise ValueError("--warmup-steps and --lora-rank cannot be negative")
        output = Path(self.output).expanduser()
        existing = next(path for path in (output, *output.parents) if path.exists())
        if not existing.is_dir():
            raise ValueError(f"--output {self.output}: {existing} is a file, not a directory")
        self.grounding()  # raises on out-of-range grounding settings

    def grounding(self):
        from gpt2chat.modeling.tokens import Grounding

        return Grounding(grounded_fraction=self.grounded_fraction, sibling_fraction=self.sibling_fraction,
                         answer_sentences=self.answer_sentences, answer_tokens=self.answer_tokens)


def _batches(packed, config: TrainConfig, first_step: int):
    """The run's batches from ``first_step`` on: rows in a fresh seeded order every pass over the data, and batch k
    a function of k alone, so a resumed run sees exactly the batches of an uninterrupted one. (Counting epochs in
    the dataset broke that: Keras calls on_epoch_end once before training, and fit's shuffle reorders each epoch's
    batches with Python's random state, which no checkpoint holds.)"""
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
            return self.packed.select(self._row_indices(first_step + index)).batch

    return PackedBatches()


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


def build_training_model(config: TrainConfig):
    """(causal_lm, training_model): the task that is saved as the preset, and the model that ``fit`` trains.

    The training model is a plain functional model over the same layers: Keras' own fit feeds NumPy batches on
    every backend, whereas Keras-Hub's task fit routes them through tf.data or grain."""
    import keras

    causal_lm = _load_or_build(config)
    training_model = keras.Model(causal_lm.inputs, causal_lm.outputs, name="gpt2_training")
    compile_for_training(training_model, config)
    return causal_lm, training_model


def compile_for_training(training_model, config: TrainConfig) -> None:
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.steps - config.warmup_steps,
        alpha=0.1,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=config.weight_decay, beta_2=0.95, global_clipnorm=1.0
    )
    # Decaying norms, biases and embeddings hurts small models; GPT-2 practice decays matrices only.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    # Keras' default reduction divides a sample-weighted loss by every position, so the answer-only loss would be
    # scaled by the share of answer tokens (~0.2) and the learning rate with it; divide by the weights instead.
    training_model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight"),
        weighted_metrics=[_answer_token_loss()()],
        jit_compile=True,
    )


def _answer_token_loss():
    import keras

    class AnswerTokenLoss(keras.metrics.Metric):
        """Cross-entropy summed over weighted (answer) tokens / their number, over a whole epoch or evaluation:
        exact, where the loss Keras logs is a mean of per-batch means."""

        def __init__(self, name="answer_loss", **kwargs):
            super().__init__(name=name, **kwargs)
            self.total = self.add_variable(shape=(), initializer="zeros", name="total")
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true, y_pred, sample_weight=None):
            losses = keras.losses.sparse_categorical_crossentropy(y_true, keras.ops.cast(y_pred, "float32"),
                                                                  from_logits=True)
            weights = keras.ops.ones_like(losses) if sample_weight is None else keras.ops.cast(sample_weight,
                                                                                               "float32")
            self.total.assign_add(keras.ops.sum(losses * weights))
            self.count.assign_add(keras.ops.sum(weights))

        def result(self):
            return self.total / keras.ops.maximum(self.count, 1.0)

    return AnswerTokenLoss


def prepare_data(config: TrainConfig, tokenizer, run: RunDirectory):
    """(training rows, validation rows), each with answer-token weights; references are retrieved from one index
    over the training and validation pairs, built once per run (~5 s for 15,600 pairs)."""
    from gpt2chat.corpus.data import load_records
    from gpt2chat.search.retrieval import RetrievalIndex
    from gpt2chat.corpus.splits import save_split, split_records
    from gpt2chat.modeling.tokens import grounded_examples, pack_examples, tokenize_examples

    records, report = load_records(config.data, progress=True)
    splits = split_records(records)
    save_split(splits, run.split)
    train_records = splits["train"][: config.max_records] if config.max_records else splits["train"]
    print(f"{len(records)} answered pairs; training on {len(train_records)}, validating on "
          f"{len(splits['validation'])} (split by focus, saved to {run.split})", flush=True)
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
    rows = np.random.default_rng(config.seed).permutation(len(packed["validation"].rows))[: config.eval_rows]
    return packed["train"], packed["validation"].select(np.sort(rows))


def train(config: TrainConfig) -> dict:
    """Run (or resume) training; returns the summary written to metrics.json.

    The settings, the data path and the model (a preset that does not load) are checked before the run directory
    is written, and a run that fails before its first checkpoint takes its settings file with it: either way the
    corrected command is not refused as "a run with other settings"."""
    config.validate()
    import keras

    from gpt2chat.corpus.data import xml_files

    xml_files(settings.medquad_dir(config.data))
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    causal_lm, training_model = build_training_model(config)
    run = RunDirectory(config.output)
    fresh = run.training_config() is None
    try:
        run.prepare(dataclasses.asdict(config))
    except OSError as error:
        raise ValueError(f"cannot write the run directory {run.root}: {error.strerror or error}") from None
    try:
        return _train_in(run, config, causal_lm, training_model)
    except BaseException:
        if fresh and run.load_state() is None:
            run.config.unlink(missing_ok=True)
        raise


def _train_in(run: RunDirectory, config: TrainConfig, causal_lm, training_model) -> dict:
    import keras

    train_rows, validation = prepare_data(config, causal_lm.preprocessor.tokenizer, run)
    if len(train_rows.rows) < config.batch_size:
        raise ValueError(f"only {len(train_rows.rows)} training rows, fewer than --batch-size {config.batch_size}")

    total_epochs = config.steps // config.eval_interval
    state = run.load_state()
    first_epoch, history, best = 0, [], float("inf")
    if state:
        training_model.optimizer.build(training_model.trainable_variables)
        training_model.load_weights(run.last_weights)
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
        training_model.fit(
            _batches(train_rows, config, first_epoch * config.eval_interval),
            steps_per_epoch=config.eval_interval,
            shuffle=False,  # the order is _batches' own, seeded by step
            validation_data=validation.batch,
            validation_batch_size=config.batch_size,
            epochs=total_epochs,
            initial_epoch=first_epoch,
            callbacks=[checkpointing(run, config, history, best)],
            verbose=1,
        )
        wall = time.perf_counter() - started
    else:
        wall = 0.0
        print("training already complete; writing the preset again", flush=True)

    if not run.best_weights.exists():
        raise TrainingDiverged(f"no best checkpoint in {run.checkpoints}: delete {run.root} and train again")
    training_model.load_weights(run.best_weights)
    causal_lm.save_to_preset(str(run.root))
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
        "history": history,
    }
    RunDirectory.atomic_write_json(summary, run.metrics)
    print(f"saved preset to {run.root} (best val perplexity {summary['best_val_perplexity']:.1f} "
          f"at step {summary['best_step']})", flush=True)
    return summary


_ARGUMENT_TYPES = {"max_records": int}  # settings whose default (None) does not tell their type; others: str


def parse_args(argv: list[str] | None) -> TrainConfig:
    """The recipe (``--recipe``, default quickstart), then any setting given as a flag."""
    parser = argparse.ArgumentParser(
        prog="python -m gpt2chat.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, choices=recipe_names(),
                        help="named settings in gpt2chat/modeling/recipes/ (default: %(default)s); flags below "
                             "override them")
    parser.add_argument("--from-scratch", action="store_true",
                        help="random initialisation even if the recipe names a preset")
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
    recipe, from_scratch = args.pop("recipe"), args.pop("from_scratch")
    if from_scratch:
        if args.get("preset"):
            parser.error("--from-scratch and --preset exclude each other")
        args["preset"] = None
    return TrainConfig.from_recipe(recipe, **args)


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
