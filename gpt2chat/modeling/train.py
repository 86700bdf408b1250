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
import contextlib
import dataclasses
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
from gpt2chat.modeling.training_config import DEFAULT_RECIPE, QUICKSTART, TrainConfig, recipe_names
from gpt2chat.modeling.training_data import (local_validation_batches, prepare_data, prepare_generic_data,
                                             training_batches, validation_batches)
from gpt2chat.modeling.training_model import build_training_model

log = logging.getLogger(__name__)


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
        batches = training_batches(train_rows, config, first_epoch * config.eval_interval,
                           replicas if keras_distributed else 1)
        validation_data, validation_batch_size, validation_steps = validation.batch, config.batch_size, None
        if keras_distributed:
            validation_data, validation_batch_size = local_validation_batches(validation, config, replicas), None
            print(f"{type(keras.distribution.distribution()).__name__} over {replicas * config.model_parallel} "
                  f"devices in {processes.count} process(es): {replicas} data-parallel replicas of "
                  f"{config.batch_size // replicas} rows per step", flush=True)
        if strategy:
            batches = distribute.distributed_batches(strategy, batches, len(batches))
            validation_steps = math.ceil(len(validation.rows) / config.batch_size)
            validation_data, validation_batch_size = validation_batches(strategy, validation, config), None
            print(f"data-parallel over {strategy.num_replicas_in_sync} replicas "
                  f"({type(strategy).__name__}): {config.batch_size // strategy.num_replicas_in_sync} rows each "
                  f"per step", flush=True)
        training_model.fit(
            batches,
            steps_per_epoch=config.eval_interval,
            shuffle=False,  # the order is training_batches' own, seeded by step
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
        default = f" (quickstart: {QUICKSTART[field.name]})" if field.name in QUICKSTART else ""
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
