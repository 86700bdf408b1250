"""What keeps a training run safe to kill and safe to leave alone: the Keras callback that, at every evaluation,
logs the losses, keeps the best weights by validation loss and writes a resumable checkpoint (with the dropout
layers' random state, which Keras leaves out of the weights file), and stops the run as soon as its loss diverges.

Used by ``gpt2chat.modeling.train``; a resumed run reproduces an uninterrupted one exactly (tests/test_train.py).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from gpt2chat.errors import CommandError
from gpt2chat.modeling.rundir import RunDirectory, perplexity
from gpt2chat.modeling.tokenizer import VOCABULARY_SIZE

# Guessing uniformly over the vocabulary costs ln(50,257) = 10.8 per token; a loss past twice that is a run that
# has diverged, not one that is learning slowly.
DIVERGED_LOSS = 2 * math.log(VOCABULARY_SIZE)


class TrainingDiverged(RuntimeError, CommandError):
    """The loss became NaN, infinite or far worse than guessing: the run stops instead of training on garbage."""


def seed_states(model) -> list[list[int]]:
    """The random-number state of every dropout layer, which Keras leaves out of the weights file: without it a
    resumed run with dropout would draw other masks than an uninterrupted one."""
    return [np.asarray(v).tolist() for v in model.variables if v.path.endswith("seed_generator_state")]


def restore_seed_states(model, states: list[list[int]]) -> None:
    variables = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    if len(variables) != len(states):
        raise ValueError("the checkpoint's random state does not fit this model; use another --output")
    for variable, state in zip(variables, states):
        variable.assign(np.asarray(state, dtype=variable.dtype))


def checkpointing(run: RunDirectory, config, history: list[dict], best: float, *, writes: bool = True):
    """The callback for ``fit`` with a ``gpt2chat.modeling.training_config.TrainConfig``; ``history`` (the entries so far) grows in place, ``best`` is the best validation
    loss so far (``inf`` for a fresh run). Without ``writes`` (a process other than the first of a multi-process
    run) it keeps the history and stops a diverging run but writes nothing. Keras is imported only when the
    callback is built, so that importing ``gpt2chat.modeling.train`` for ``--help`` stays cheap."""
    import keras

    class Checkpointing(keras.callbacks.Callback):
        """Per evaluation: log metrics, keep the best weights by validation loss, and save a resumable checkpoint.
        A NaN, infinite or exploding loss stops the run at once, before it can overwrite a good checkpoint."""

        def __init__(self):
            super().__init__()
            self.run, self.config, self.history, self.best = run, config, history, best
            self.tokens_per_eval = config.eval_interval * config.batch_size * config.sequence_length
            self.started = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self.train_seconds = time.perf_counter() - self.started  # excludes the validation pass
            self._stop_if_diverged(self.epoch * self.config.eval_interval + batch + 1, float(logs["loss"]))

        def _stop_if_diverged(self, step: int, loss: float) -> None:
            if math.isfinite(loss) and loss <= DIVERGED_LOSS:
                return
            if self.history:
                where = (f"the checkpoint of step {self.history[-1]['step']} is kept; start a new run (another "
                         f"--output, or delete {self.run.root})")
            else:
                where = "nothing was saved; run again"
            raise TrainingDiverged(f"training diverged at step {step} (loss {loss:.4g}): {where} with a lower "
                                   f"--learning-rate than {self.config.learning_rate:g}")

        def _save(self, path):
            if writes:
                RunDirectory.atomic_write_weights(self.model, path)
                return
            # The other processes save too, into a folder thrown away: saving runs JAX operations that every
            # process must run alike (measured: process 0 saving alone failed JAX's cross-process check of
            # device_put, "not the same on each process").
            with tempfile.TemporaryDirectory(prefix="gpt2chat-discarded-") as folder:
                self.model.save_weights(Path(folder) / path.name)

        def on_epoch_end(self, epoch, logs=None):
            self._stop_if_diverged((epoch + 1) * self.config.eval_interval, float(logs["val_loss"]))
            entry = {  # losses per answer token: prompt, reference and question carry no weight
                "step": (epoch + 1) * self.config.eval_interval,
                "train_loss": float(logs["answer_loss"]),
                "val_loss": float(logs["val_answer_loss"]),
                "val_perplexity": perplexity(logs["val_answer_loss"]),
                "tokens_per_second": self.tokens_per_eval / self.train_seconds,
            }
            self.history.append(entry)
            improved = entry["val_loss"] < self.best
            self.best = min(self.best, entry["val_loss"])
            if improved:
                self._save(self.run.best_weights)
            self._save(self.run.last_weights)
            states = seed_states(self.model)
            if writes:
                RunDirectory.atomic_write_json(
                    {"epoch": epoch, "best_val_loss": self.best, "history": self.history, "seed_states": states},
                    self.run.state
                )
            print(
                f"step {entry['step']}: per answer token: train loss {entry['train_loss']:.3f}, "
                f"val loss {entry['val_loss']:.3f}, "
                f"val perplexity {entry['val_perplexity']:.1f}, {entry['tokens_per_second']:.0f} tokens/s",
                flush=True,
            )

    return Checkpointing()
