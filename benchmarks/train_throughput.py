"""Training throughput (tokens/s) and model FLOPs utilisation of gpt2chat's training path, for a GPU.

    # GPU (the figures this benchmark is for): JAX backend, bf16 mixed precision, XLA
    pip install "jax[cuda12]"                     # on the GPU machine, beside requirements.txt
    python benchmarks/train_throughput.py --size base --sequence-lengths 512 1024 --batch-size 16 --json gpu.json

    # CPU smoke check (proves the script runs; the numbers mean nothing)
    python benchmarks/train_throughput.py --backend tensorflow --size tiny --sequence-lengths 64 --batch-size 2 \\
        --steps 3 --warmup-steps 1

The model is built and compiled exactly as ``python -m gpt2chat.train`` does (``gpt2chat.train.build_training_model``,
whose ``compile_for_training`` sets AdamW with the cosine schedule, weight-decay exclusions, global-norm clipping,
``jit_compile=True``) as the same plain functional ``keras.Model`` over the ``GPT2CausalLM`` layers, under the
``--precision`` policy (default ``mixed_bfloat16``). Batches are packed rows of synthetic random tokens (every
position is a real token, as in training). ``--warmup-steps`` steps (compilation included) are run first and not
timed; then ``--steps`` steps are timed, each ending when its loss is back on the host.

FLOPs per token = 6·N + 12·L·H·T (forward and backward: 2 per multiply-add for each of N parameters in matrix
products, times 3; plus attention scores and weighted values), where N counts every parameter that multiplies
(the tied token embedding counts once, as the output projection; the position embedding, a lookup, does not),
L is the number of layers, H the hidden width and T the sequence length. MFU = tokens/s × FLOPs per token /
peak FLOP/s; ``--peak-tflops`` defaults to 989, the dense bf16 peak of an H100 SXM (an H200 has the same).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

H100_BF16_DENSE_TFLOPS = 989.0


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
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default: 20)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first, compile included (default: 3)")
    parser.add_argument("--precision", default="mixed_bfloat16",
                        choices=("float32", "mixed_bfloat16", "mixed_float16"), help="(default: mixed_bfloat16)")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS,
                        help=f"accelerator peak for MFU (default: {H100_BF16_DENSE_TFLOPS:g}, H100/H200 bf16 dense)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def matmul_parameters(backbone) -> int:
    """Parameters that take part in matrix products: all of them but the position embedding (a lookup)."""
    return int(backbone.count_params()) - int(backbone.position_embedding.count_params())


def flops_per_token(backbone, sequence_length: int) -> float:
    layers, hidden = backbone.num_layers, backbone.hidden_dim
    return 6.0 * matmul_parameters(backbone) + 12.0 * layers * hidden * sequence_length


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


def measure(sequence_length: int, args) -> dict:
    import keras
    import numpy as np

    from gpt2chat import train as training

    total_steps = args.warmup_steps + args.steps
    config = training.TrainConfig(
        size=args.size, sequence_length=sequence_length, batch_size=args.batch_size, precision=args.precision,
        steps=total_steps + 1, eval_interval=total_steps + 1, warmup_steps=min(10, total_steps), seed=args.seed,
    )
    config.validate()
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    # The same construction and compile as gpt2chat.train.train.
    causal_lm, training_model = training.build_training_model(config)

    rng = np.random.default_rng(config.seed)
    vocabulary = causal_lm.backbone.vocabulary_size
    batches = []
    for _ in range(4):  # a few distinct packed batches, cycled
        rows = rng.integers(0, vocabulary, size=(config.batch_size, sequence_length + 1), dtype=np.int32)
        token_ids = rows[:, :-1]
        batches.append(({"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}, rows[:, 1:]))

    started = time.perf_counter()
    for step in range(args.warmup_steps):
        x, y = batches[step % len(batches)]
        float(np.asarray(training_model.train_on_batch(x, y)).reshape(-1)[0])
    warmup_seconds = time.perf_counter() - started
    step_seconds, losses = [], []
    for step in range(args.steps):
        x, y = batches[step % len(batches)]
        began = time.perf_counter()
        losses.append(float(np.asarray(training_model.train_on_batch(x, y)).reshape(-1)[0]))  # waits for the step
        step_seconds.append(time.perf_counter() - began)

    tokens_per_step = config.batch_size * sequence_length
    median_step = statistics.median(step_seconds)
    tokens_per_second = tokens_per_step / median_step
    per_token = flops_per_token(causal_lm.backbone, sequence_length)
    achieved_tflops = tokens_per_second * per_token / 1e12
    return {
        "sequence_length": sequence_length,
        "batch_size": config.batch_size,
        "tokens_per_step": tokens_per_step,
        "median_step_seconds": median_step,
        "step_seconds": [round(s, 5) for s in step_seconds],
        "tokens_per_second": tokens_per_second,
        "flops_per_token": per_token,
        "achieved_tflops": achieved_tflops,
        "mfu": achieved_tflops / args.peak_tflops,
        "warmup_seconds_including_compile": warmup_seconds,
        "final_loss": losses[-1],
        "parameters": int(causal_lm.backbone.count_params()),
        "matmul_parameters": matmul_parameters(causal_lm.backbone),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend  # before Keras is imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from gpt2chat.model import SIZES

    if args.size not in SIZES:
        raise SystemExit(f"--size must be one of {', '.join(SIZES)}")
    if keras.config.backend() != args.backend:
        raise SystemExit(f"Keras was already imported with the {keras.config.backend()} backend")
    result = {"backend": args.backend, "devices": devices(), "size": args.size, "precision": args.precision,
              "peak_tflops": args.peak_tflops, "keras": keras.__version__, "runs": []}
    print(f"backend {args.backend} on {', '.join(result['devices'])}; {args.size}, {args.precision}, "
          f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup_steps} warm-up", flush=True)
    for sequence_length in args.sequence_lengths:
        run = measure(sequence_length, args)
        result["runs"].append(run)
        print(f"T={sequence_length}: {run['tokens_per_second']:,.0f} tokens/s, {run['achieved_tflops']:.2f} TFLOP/s, "
              f"MFU {100 * run['mfu']:.1f}% (step {1000 * run['median_step_seconds']:.1f} ms, "
              f"warm-up {run['warmup_seconds_including_compile']:.1f} s, loss {run['final_loss']:.2f})", flush=True)
    print(f"\n{'seq len':>8}{'batch':>7}{'tokens/s':>12}{'TFLOP/s':>10}{'MFU':>8}")
    for run in result["runs"]:
        print(f"{run['sequence_length']:>8}{run['batch_size']:>7}{run['tokens_per_second']:>12,.0f}"
              f"{run['achieved_tflops']:>10.2f}{100 * run['mfu']:>7.1f}%")
    print(f"MFU against {args.peak_tflops:g} TFLOP/s; FLOPs/token = 6N + 12LHT with N = "
          f"{result['runs'][0]['matmul_parameters']:,} matmul parameters")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
