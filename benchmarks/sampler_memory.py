"""Resident memory kept by Keras-Hub samplers: a new ``TopPSampler`` per answer vs one sampler reused.

    .venv/bin/python benchmarks/sampler_memory.py [--calls 1000]

``gpt2chat.generation.StreamingGenerator.stream_ids`` builds a ``TopPSampler`` (through ``make_sampler``) for every
sampled answer; each one creates a Keras ``SeedGenerator`` whose memory is never given back. This measures the
resident memory after ``--calls`` answers' worth of samplers (five sampled tokens each, on GPT-2-sized logits),
created fresh each time, and with one sampler reused whose seed state is reset per answer (which keeps a seeded
answer reproducible). Counts and sizes only.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys

import numpy as np

VOCABULARY = 50257  # GPT-2's
TOKENS_PER_ANSWER = 5


def resident_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def growth_mb(run, calls: int) -> float:
    run(30)  # warm-up: compiled functions and first allocations
    gc.collect()
    before = resident_mb()
    run(calls)
    gc.collect()
    return round(resident_mb() - before, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/sampler_memory.py", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="answers simulated per variant (default: 1000)")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 20_000:
        parser.error("--calls must be between 1 and 20000")
    import keras_hub
    from keras import ops

    logits = ops.convert_to_tensor(np.random.default_rng(0).random((1, VOCABULARY), dtype=np.float32))

    def sample(sampler) -> None:
        for _ in range(TOKENS_PER_ANSWER):
            int(ops.convert_to_numpy(sampler.get_next_token(sampler.compute_probabilities(logits)))[0])

    def new_sampler_per_answer(calls: int) -> None:
        for _ in range(calls):
            sample(keras_hub.samplers.TopPSampler(p=0.9, k=50, temperature=0.7, seed=7))

    reused = keras_hub.samplers.TopPSampler(p=0.9, k=50, temperature=0.7, seed=7)
    initial_state = ops.convert_to_numpy(reused.seed_generator.state)

    def one_sampler_reset_per_answer(calls: int) -> None:
        for _ in range(calls):
            reused.seed_generator.state.assign(initial_state)
            sample(reused)

    report = {"calls": args.calls, "tokens_per_answer": TOKENS_PER_ANSWER,
              "new_sampler_per_answer_mb": growth_mb(new_sampler_per_answer, args.calls),
              "one_sampler_reset_per_answer_mb": growth_mb(one_sampler_reset_per_answer, args.calls)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
