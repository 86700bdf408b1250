"""Training throughput (tokens/s) of gpt2chat's training step, and its share of the device's matmul peak.

    # CPU (this project's machines): float32 vs bf16, XLA on and off, and a cheaper output layer, side by side
    python benchmarks/train_throughput.py --backend tensorflow --size small --sequence-lengths 256 --batch-size 8 \\
        --precisions float32 mixed_bfloat16 --jit on off --output-vocabularies 50257 16384 --measure-peak

    # GPU: JAX backend, bf16 mixed precision, MFU against the accelerator's datasheet peak
    pip install "jax[cuda12]"                     # on the GPU machine, beside requirements.txt
    python benchmarks/train_throughput.py --size base --sequence-lengths 512 1024 --batch-size 16 --json gpu.json

Each variant is the model built and compiled as ``python -m gpt2chat.train`` does (``build_training_model``:
AdamW with the cosine schedule, weight-decay exclusions, global-norm clipping, the loss and ``answer_loss`` per
answer token) under its precision policy, fed packed rows of random tokens with answer-token weights on
``--answer-share`` of the positions, as training is. ``--jit off`` recompiles without XLA (TensorFlow then runs
oneDNN kernels). An ``--output-vocabularies`` value below 50,257 computes the training logits over only the first
K token ids (a model of a training-time softmax over the vocabulary MedQuAD actually uses: 16,304 distinct GPT-2
tokens in the training split's examples); the embedding and every token id stay GPT-2's.

All variants are built first and then stepped in turn, round after round, so a shared machine's load falls on all
of them alike; the figures are medians over the timed rounds, and ``speed-up`` is the median of the per-round
ratios to the first variant.

``--measure-peak`` times a large square matmul (``--peak-size``) in the same framework and compute dtype, with and
without XLA, in every round beside the training steps; the faster is that round's peak, and ``of peak`` is the
median over rounds of (the variant's FLOP/s in the round) / (the round's peak), so a load that comes and goes
during the run affects both alike. FLOPs per token = 6·N + 12·L·H·T (forward and backward: 2 per
multiply-add for each of N parameters in matrix products, times 3; plus attention), where N counts the parameters
that multiply (the output projection counts the K rows it uses; the position embedding, a lookup, does not).
Without ``--measure-peak``, MFU is against ``--peak-tflops`` (default 989, the dense bf16 peak of an H100 SXM).

``--devices N`` (TensorFlow backend) adds every variant on N devices, data-parallel as ``python -m gpt2chat.train
--devices N`` trains (``gpt2chat.modeling.distribute``: MirroredStrategy, the global batch split over the
replicas, XLA off), and reports its ``scaling`` efficiency: its tokens/s / (N × the 1-device variant's tokens/s,
XLA off like it) per round, median over rounds. On a machine without GPUs the N devices are logical CPU devices
sharing the same cores: that run checks the distributed step works and what the strategy costs, not a speed-up.

    python benchmarks/train_throughput.py --backend tensorflow --devices 2 --size small --sequence-lengths 256 \
        --batch-size 8 --precisions float32 --jit on off
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path


H100_BF16_DENSE_TFLOPS = 989.0
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/train_throughput.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"),
                        choices=("jax", "tensorflow", "torch"),
                        help="Keras backend (default: $KERAS_BACKEND, else jax)")
    parser.add_argument("--size", default="base", help="model layout: tiny, small, base (default: base, 124M)")
    parser.add_argument("--sequence-lengths", type=int, nargs="+", default=[512, 1024],
                        help="tokens per row (default: 512 1024)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per step (default: 16)")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (default: 20)")
    parser.add_argument("--warmup-steps", type=int, default=3,
                        help="untimed rounds first, compile included (default: 3)")
    parser.add_argument("--precisions", nargs="+", default=["mixed_bfloat16"], choices=tuple(COMPUTE_DTYPES),
                        help="(default: mixed_bfloat16)")
    parser.add_argument("--jit", nargs="+", default=["on"], choices=("on", "off"),
                        help="XLA compilation of the train step, as in training (on), or not (default: on)")
    parser.add_argument("--output-vocabularies", type=int, nargs="+", default=[50257],
                        help="token ids the training logits cover (default: 50257, all of GPT-2's)")
    parser.add_argument("--answer-share", type=float, default=0.22,
                        help="share of weighted (answer) positions (default: 0.22, the quick-start recipe's)")
    parser.add_argument("--measure-peak", action="store_true",
                        help="measure this device's matmul peak per compute dtype and report MFU against it")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size for --measure-peak (default: 2048)")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS,
                        help=f"peak for MFU without --measure-peak (default: {H100_BF16_DENSE_TFLOPS:g}, H100 bf16)")
    parser.add_argument("--devices", type=int, default=1,
                        help="also step every variant data-parallel on N devices and report scaling efficiency "
                             "(TensorFlow backend; default: 1)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class Variant:
    precision: str
    jit: bool
    output_vocabulary: int
    devices: int = 1

    @property
    def label(self) -> str:
        where = f", {self.devices} devices" if self.devices > 1 else ""
        return (f"{self.precision}, XLA {'on' if self.jit and self.devices == 1 else 'off'}, logits over "
                f"{self.output_vocabulary:,} ids{where}")


def matmul_parameters(backbone, output_vocabulary: int) -> int:
    """Parameters that take part in matrix products: all but the position embedding (a lookup), with the tied
    output projection counting the rows the logits use."""
    embedding = int(backbone.token_embedding.count_params())
    rows_used = embedding // backbone.vocabulary_size * output_vocabulary
    return int(backbone.count_params()) - int(backbone.position_embedding.count_params()) - embedding + rows_used


def flops_per_token(backbone, sequence_length: int, output_vocabulary: int) -> float:
    layers, hidden = backbone.num_layers, backbone.hidden_dim
    return 6.0 * matmul_parameters(backbone, output_vocabulary) + 12.0 * layers * hidden * sequence_length


def devices() -> list[str]:
    import keras

    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in jax.devices()]
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return [d.name for d in gpus] or ["cpu"]
    import torch

    return [torch.cuda.get_device_name(0)] if torch.cuda.is_available() else ["cpu"]


def matmul_timers(dtype: str, size: int) -> dict:
    """name → a function that times one ``size``² matmul in ``dtype`` through the backend (with XLA, and without
    on TensorFlow) and returns its FLOP/s in TFLOP/s; each is compiled and run once here."""
    import keras
    import numpy as np

    backend = keras.config.backend()
    a = keras.ops.cast(keras.random.normal((size, size), seed=1), dtype)
    b = keras.ops.cast(keras.random.normal((size, size), seed=2), dtype)
    if backend == "tensorflow":
        import tensorflow as tf

        functions = {"xla": tf.function(tf.matmul, jit_compile=True), "no xla": tf.function(tf.matmul)}
    elif backend == "jax":
        import jax

        functions = {"xla": jax.jit(lambda x, y: x @ y)}
    else:
        raise SystemExit("--measure-peak supports the tensorflow and jax backends")

    def timer(matmul):
        def tflops() -> float:
            began = time.perf_counter()
            np.asarray(keras.ops.cast(matmul(a, b)[:1, :1], "float32"))  # waits for the product
            return 2.0 * size**3 / (time.perf_counter() - began) / 1e12

        tflops()  # compile
        return tflops

    return {name: timer(matmul) for name, matmul in functions.items()}


def _restricted_output_model(causal_lm, output_vocabulary: int):
    """The training model with logits over the first ``output_vocabulary`` ids of the tied embedding only."""
    import keras

    embedding = causal_lm.backbone.token_embedding

    class FirstIdsLogits(keras.layers.Layer):
        def call(self, hidden):
            table = keras.ops.cast(embedding.embeddings[:output_vocabulary], hidden.dtype)
            return keras.ops.matmul(hidden, keras.ops.transpose(table))

    inputs = causal_lm.backbone.input  # {"token_ids", "padding_mask"}
    hidden = causal_lm.backbone(inputs)
    return keras.Model(inputs, FirstIdsLogits(dtype=causal_lm.backbone.dtype_policy)(hidden))


def build_variant(variant: Variant, sequence_length: int, args, strategy=None):
    import contextlib

    import keras

    from gpt2chat.modeling.training_config import TrainConfig
    from gpt2chat.modeling.training_model import build_training_model, compile_for_training

    total_steps = args.warmup_steps + args.steps
    config = TrainConfig.from_recipe(
        "quickstart", size=args.size, sequence_length=sequence_length, batch_size=args.batch_size,
        precision=variant.precision, steps=total_steps + 1, eval_interval=total_steps + 1,
        warmup_steps=min(10, total_steps), seed=args.seed, devices=variant.devices,
    )
    config.validate()
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    strategy = strategy if variant.devices > 1 else None
    # the same construction as training
    causal_lm, training_model = build_training_model(config, strategy)
    if variant.output_vocabulary < causal_lm.backbone.vocabulary_size:
        with strategy.scope() if strategy else contextlib.nullcontext():
            training_model = _restricted_output_model(causal_lm, variant.output_vocabulary)
            compile_for_training(training_model, config)
    if not variant.jit:
        training_model.jit_compile = False  # the train function is built on the first step, after this
    return causal_lm, training_model


def distributed_stepper(model, strategy, data: list, rounds: int):
    """One training step per call on ``strategy``'s replicas, each on its slice of the next batch of ``data``
    (cycled), as training feeds them. Keras' ``train_on_batch`` would hand every replica the whole batch."""
    from gpt2chat.modeling import distribute

    dataset = distribute.distributed_batches(strategy, [data[r % len(data)] for r in range(rounds)], rounds)
    model.fit(dataset, steps_per_epoch=1, verbose=0)  # builds the optimizer and train function as training does
    iterator = iter(dataset)  # from the first batch again

    def step():
        return model.train_function(iterator)["loss"]

    return step


def batches(sequence_length: int, output_vocabulary: int, args, count: int = 4) -> list:
    import numpy as np

    from gpt2chat.modeling.tokens import model_inputs

    rng = np.random.default_rng(args.seed)
    shape = (args.batch_size, sequence_length + 1)
    return [model_inputs(rng.integers(0, output_vocabulary, size=shape, dtype=np.int32),
                         (rng.random(shape) < args.answer_share).astype(np.float32)) for _ in range(count)]


def measure(sequence_length: int, variants: list[Variant], args, peaks: dict, strategy=None) -> list[dict]:
    """Every variant's tokens/s, and its share of the matmul peak of its compute dtype measured in the same rounds
    (``peaks``: dtype → name → timer; filled with each round's figures)."""
    import numpy as np

    built = [(v, *build_variant(v, sequence_length, args, strategy)) for v in variants]
    data = {v.output_vocabulary: batches(sequence_length, v.output_vocabulary, args) for v in variants}
    rounds = args.warmup_steps + args.steps
    steppers = {v: distributed_stepper(model, strategy, data[v.output_vocabulary], rounds)
                for v, _, model in built if v.devices > 1}
    timings = {v: [] for v in variants}
    round_peaks = {dtype: [] for dtype in peaks}
    losses = {}
    for round_ in range(rounds):
        for variant, _, model in built:
            x, y, weights = data[variant.output_vocabulary][round_ % 4]
            began = time.perf_counter()
            if variant in steppers:
                loss = float(steppers[variant]())  # waits
            else:
                loss = float(np.asarray(model.train_on_batch(x, y, sample_weight=weights)).reshape(-1)[0])  # waits
            if round_ >= args.warmup_steps:
                timings[variant].append(time.perf_counter() - began)
            losses[variant] = loss
        if round_ >= args.warmup_steps:
            for dtype, timers in peaks.items():
                round_peaks[dtype].append({name: timer() for name, timer in timers.items()})
    tokens_per_step = args.batch_size * sequence_length
    first = timings[variants[0]]
    runs = []
    for variant, causal_lm, _ in built:
        seconds = timings[variant]
        per_token = flops_per_token(causal_lm.backbone, sequence_length, variant.output_vocabulary)
        achieved = [tokens_per_step * per_token / s / 1e12 for s in seconds]
        dtype_peaks = round_peaks.get(COMPUTE_DTYPES[variant.precision])
        shares = ([a / max(p.values()) for a, p in zip(achieved, dtype_peaks)] if dtype_peaks
                  else [a / args.peak_tflops for a in achieved])
        runs.append({
            **dataclasses.asdict(variant), "label": variant.label, "sequence_length": sequence_length,
            "batch_size": args.batch_size, "tokens_per_second": tokens_per_step / statistics.median(seconds),
            "step_seconds": [round(s, 5) for s in seconds],
            "speed_up": statistics.median(f / s for f, s in zip(first, seconds)),
            "flops_per_token": per_token, "achieved_tflops": statistics.median(achieved),
            "mfu": statistics.median(shares), "final_loss": losses[variant],
            "parameters": int(causal_lm.backbone.count_params()),
        })
        if variant.devices > 1:
            # against one device without XLA, as the replicas run
            single = timings[dataclasses.replace(variant, jit=False, devices=1)]
            runs[-1]["scaling_efficiency"] = statistics.median(s1 / (variant.devices * s)
                                                               for s1, s in zip(single, seconds))
    return runs, round_peaks


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend  # before Keras is imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    strategy = None
    if args.devices > 1:
        if args.backend != "tensorflow":
            # On JAX the distribution is global to the process (and, over several processes, every process must run
            # the same steps), so the 1-device baseline cannot be built beside it: JAX runs are measured by training.
            raise SystemExit("--devices needs --backend tensorflow (MirroredStrategy); on JAX, time "
                             "`python -m gpt2chat.train --devices N` (README: Training at scale)")
        from gpt2chat import settings
        from gpt2chat.modeling import distribute

        strategy = distribute.strategy(args.devices, settings.tf_config())  # before TensorFlow starts
        if args.batch_size % args.devices:
            raise SystemExit(f"--batch-size {args.batch_size} must split evenly over --devices {args.devices}")
    import keras

    from gpt2chat.modeling.model import SIZES

    if args.size not in SIZES:
        raise SystemExit(f"--size must be one of {', '.join(SIZES)}")
    from gpt2chat.modeling import model

    # One tokenizer for every variant: building GPT-2's BPE tables takes 15-30 s and plays no part in a step.
    model.gpt2_tokenizer = functools.cache(model.gpt2_tokenizer)
    if keras.config.backend() != args.backend:
        raise SystemExit(f"Keras was already imported with the {keras.config.backend()} backend")
    variants = [Variant(p, j == "on", k) for p in args.precisions for j in args.jit for k in args.output_vocabularies]
    if strategy:
        # each N-device variant is compared with the same variant on one device without XLA
        variants += [Variant(p, False, k) for p in args.precisions for k in args.output_vocabularies
                     if Variant(p, False, k) not in variants]
        variants += [Variant(p, False, k, args.devices) for p in args.precisions for k in args.output_vocabularies]
    result = {"backend": args.backend, "devices": devices(), "size": args.size, "keras": keras.__version__,
              "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(), "peaks": {}, "runs": []}
    timers = {}
    if args.measure_peak:
        timers = {dtype: matmul_timers(dtype, args.peak_size)
                  for dtype in sorted({COMPUTE_DTYPES[p] for p in args.precisions})}
    print(f"backend {args.backend} on {', '.join(result['devices'])}; {args.size}, batch {args.batch_size}, "
          f"{args.steps} timed rounds after {args.warmup_steps} warm-up; {len(variants)} variants in turn", flush=True)
    for sequence_length in args.sequence_lengths:
        runs, round_peaks = measure(sequence_length, variants, args, timers, strategy)
        result["runs"].extend(runs)
        result["peaks"][sequence_length] = round_peaks
    for dtype, rounds in (result["peaks"].get(args.sequence_lengths[-1]) or {}).items():
        for name in rounds[0]:
            figures = [r[name] for r in rounds]
            print(f"matmul {dtype} {args.peak_size}², {name}: median {1000 * statistics.median(figures):.0f}, "
                  f"best {1000 * max(figures):.0f} GFLOP/s over the rounds")
    result["load_average_after"] = os.getloadavg()
    print(f"\n{'variant':<68}{'T':>5}{'tokens/s':>10}{'speed-up':>10}{'GFLOP/s':>9}{'of peak':>9}{'scaling':>9}")
    for run in result["runs"]:
        scaling = f"{100 * run['scaling_efficiency']:>8.1f}%" if "scaling_efficiency" in run else ""
        print(f"{run['label']:<68}{run['sequence_length']:>5}{run['tokens_per_second']:>10,.0f}"
              f"{run['speed_up']:>9.2f}x{1000 * run['achieved_tflops']:>9.1f}{100 * run['mfu']:>8.1f}%{scaling}")
    if strategy and not any("GPU" in d for d in result["devices"]):
        print(f"{args.devices} logical CPU devices share this machine's {os.cpu_count()} cores: a correctness run of "
              f"the distributed step and its overhead, not a speed-up")
    print(f"load average before {result['load_average_before'][0]:.1f}, after {result['load_average_after'][0]:.1f} "
          f"on {result['cpu_count']} CPUs; FLOPs/token = 6N + 12LHT")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
