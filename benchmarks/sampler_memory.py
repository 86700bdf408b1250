"""Resident memory kept per sampled answer: Keras-Hub's ``TopPSampler`` (new per answer, or one reused) vs
gpt2chat's NumPy ``Sampler`` (new per answer, as ``stream_ids`` builds it).

    .venv/bin/python benchmarks/sampler_memory.py [--calls 1000]

``stream_ids`` used to build a Keras-Hub ``TopPSampler`` for every sampled answer; each one creates a Keras
``SeedGenerator`` whose memory is never given back, which is why ``gpt2chat.modeling.generation.Sampler``
samples in NumPy.
This measures the resident memory after ``--calls`` answers' worth of samplers (five sampled tokens each, on
GPT-2-sized logits): Keras's created fresh each time, one Keras sampler reused with its seed state reset per answer,
and gpt2chat's created fresh each time. Counts and sizes only.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys


import numpy as np  # noqa: E402

from gpt2chat.modeling.tokenizer import VOCABULARY_SIZE as VOCABULARY  # noqa: E402
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

    from gpt2chat.modeling.generation import Sampler, SamplingConfig

    host_logits = ops.convert_to_numpy(logits)[0]

    def gpt2chat_sampler_per_answer(calls: int) -> None:
        for _ in range(calls):
            sampler = Sampler(SamplingConfig(temperature=0.7, top_p=0.9, top_k=50, seed=7))
            for _ in range(TOKENS_PER_ANSWER):
                sampler(host_logits)

    report = {"calls": args.calls, "tokens_per_answer": TOKENS_PER_ANSWER,
              "new_sampler_per_answer_mb": growth_mb(new_sampler_per_answer, args.calls),
              "one_sampler_reset_per_answer_mb": growth_mb(one_sampler_reset_per_answer, args.calls),
              "gpt2chat_sampler_per_answer_mb": growth_mb(gpt2chat_sampler_per_answer, args.calls)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
