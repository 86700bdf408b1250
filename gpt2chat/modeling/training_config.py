"""A training run's settings: the recipes (``recipes/<name>.json``, data) and ``TrainConfig``, whose defaults are the
quick-start recipe's values and whose field help is the ``--help`` of ``python -m gpt2chat.train``."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from gpt2chat import settings
from gpt2chat.modeling.model import SIZES


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


QUICKSTART = read_recipe(DEFAULT_RECIPE)


def _setting(name: str, help: str):
    """A training setting whose default is the quick-start recipe's value: the numbers live in the recipe file."""
    return dataclasses.field(default=QUICKSTART[name], metadata={"help": help})


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
