"""Serving speed of the OpenVINO export against Keras on the same weights (issue 14's targets).

    python benchmarks/export_speed.py --size base --runs 5            # seeded random `base` (the 124M layout)
    python benchmarks/export_speed.py --model models/default --runs 5 # a trained preset

For each runtime (Keras ``StreamingGenerator``, the export with int8 and with f32 weights), after a warm-up:
time to first token for a grounded prompt of --prompt-tokens tokens, and decoding tokens/s over --new-tokens
greedy tokens (never stopped early), median over --runs runs taken in turns, so every runtime sees the same
machine load. The load average is printed beside the figures: on a shared machine read them as ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def generators(causal_lm, runtimes, threads: int):
    from gpt2chat.modeling.export import build_generator
    from gpt2chat.modeling.generation import StreamingGenerator

    for runtime in runtimes:
        started = time.perf_counter()
        if runtime == "keras":
            generator = StreamingGenerator(causal_lm)
        else:
            generator = build_generator(causal_lm, runtime.removeprefix("openvino-"), threads=threads)
        generator.end_token_id = None
        generator.warm_up()
        yield runtime, generator, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--size", default="base", help="a gpt2chat.modeling.model size with seeded random weights")
    source.add_argument("--model", help="a preset directory instead")
    parser.add_argument("--runtimes", default="keras,openvino-int8,openvino-f32",
                        help="comma-separated: keras, openvino-int8, openvino-f32")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="OpenVINO inference threads")
    args = parser.parse_args(argv)
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = set(runtimes) - {"keras", "openvino-int8", "openvino-f32"}
    if unknown or args.runs < 1 or args.prompt_tokens < 1 or args.new_tokens < 2:
        parser.error(f"unknown runtimes {sorted(unknown)}" if unknown else "--runs, --prompt-tokens >= 1, "
                     "--new-tokens >= 2")

    import keras
    from tqdm import tqdm

    from gpt2chat.modeling.generation import GenerationStats, SamplingConfig
    from gpt2chat.modeling.model import build_causal_lm, load_preset
    from gpt2chat.modeling.prompt import build_prompt

    keras.utils.set_random_seed(0)
    causal_lm = load_preset(args.model) if args.model else build_causal_lm(args.size, 1024)
    ready = list(generators(causal_lm, runtimes, args.threads))
    reference = " ".join(["Glaucoma is a group of eye diseases that damage the optic nerve."] * 60)
    prompt = ready[0][1].encode(build_prompt("How is glaucoma treated?", reference=reference))
    prompt = prompt[-args.prompt_tokens:]
    config = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.0)
    figures = {name: {"ttft": [], "tps": []} for name, _, _ in ready}
    ids, prompt_tokens = {}, 0
    for _ in tqdm(range(args.runs), desc="runs"):
        for name, generator, _ in ready:
            stats = GenerationStats()
            ids[name] = list(generator.stream_ids(prompt, config, stats))
            prompt_tokens = stats.prompt_tokens  # the prompt as kept beside --new-tokens in the context
            figures[name]["ttft"].append(stats.seconds_to_first_token)
            figures[name]["tps"].append(stats.tokens_per_second)
    load = os.getloadavg()
    label = args.model or f"{args.size} (seeded random weights)"
    print(f"\n{label}: prompt {prompt_tokens} tokens, {args.new_tokens} new tokens, {args.runs} runs, "
          f"OpenVINO threads {args.threads}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print("| runtime | set-up s | first token s (median) | tokens/s (median) | tokens/s runs | same ids as first |")
    print("|---|---|---|---|---|---|")
    first = ready[0][0]
    for name, _, setup in ready:
        ttft, tps = statistics.median(figures[name]["ttft"]), statistics.median(figures[name]["tps"])
        runs = ", ".join(f"{t:.0f}" for t in figures[name]["tps"])
        same = sum(a == b for a, b in zip(ids[name], ids[first])) / len(ids[first])
        print(f"| {name} | {setup:.1f} | {ttft:.3f} | {tps:.1f} | {runs} | {same:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
