"""gpt2chat's streaming generation against Hugging Face ``transformers`` on the same CPU, weights and prompt.

    pip install -r requirements-bench.txt          # torch (CPU) and transformers: benchmark extras only
    python benchmarks/cpu_generation.py --size base --json base.json
    python benchmarks/cpu_generation.py --model models/default --new-tokens 64

One process builds a Keras-Hub GPT-2 (a named size with seeded random weights, or a trained preset directory),
copies its weights into ``transformers.GPT2LMHeadModel`` and checks that both give the same logits (max abs
difference below 1e-3, else it stops). Both then decode greedily from the same prompt ids for exactly
``--new-tokens`` tokens (the end-of-text token is an ordinary token on both sides, so neither stops early), and the
token ids of the two must agree. Runs alternate between the two implementations after one warm-up each, and the
medians are reported:

* time to first token: from the call (prompt ids in hand) to the first new token id, prefill included;
* tokens/s: (new tokens - 1) / (time of last token - time of first token), the decode rate, as in
  ``gpt2chat.generation.GenerationStats``.

torch runs with ``--threads`` intra-op threads (default: all cores) and so does TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

DEFAULT_PROMPT = (
    "Question: What are the symptoms of glaucoma, and how is it treated?\n"
    "Answer:"
)
LOGIT_TOLERANCE = 1e-3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/cpu_generation.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--size", default="base", help="random seeded model of this size: tiny, small, base "
                                                       "(default: base, the 124M layout)")
    source.add_argument("--model", help="a Keras-Hub GPT-2 preset directory (e.g. models/default) instead")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt text (default: a MedQuAD-style question)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per run (default: 64)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per implementation (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: 1)")
    parser.add_argument("--compare-tokens", type=int, default=20,
                        help="leading greedy ids that must be identical (default: 20)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads (default: all cores)")
    parser.add_argument("--context-length", type=int, help="gpt2chat context (default: the model's own)")
    parser.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                        help="gpt2chat's XLA compilation: auto (by model width, the app's default), on or off")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--skip-transformers", action="store_true", help="time gpt2chat alone (no torch needed)")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def build_keras(args):
    import keras

    from gpt2chat.model import build_causal_lm, load_preset

    keras.utils.set_random_seed(args.seed)
    if args.model:
        return load_preset(args.model)
    return build_causal_lm(args.size, 1024)


# --- Keras-Hub → transformers weight copy ------------------------------------------------------------------------

def to_transformers(causal_lm):
    """A ``GPT2LMHeadModel`` holding the same weights as the Keras-Hub ``GPT2CausalLM`` (inverse of Keras-Hub's
    ``convert_gpt2``). Conv1D weights are (in, out) like Keras Dense kernels; q, k, v are concatenated."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    backbone = causal_lm.backbone
    hidden = backbone.hidden_dim
    config = GPT2Config(
        vocab_size=backbone.vocabulary_size, n_positions=backbone.max_sequence_length, n_embd=hidden,
        n_layer=backbone.num_layers, n_head=backbone.num_heads, n_inner=backbone.intermediate_dim,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=1e-5, tie_word_embeddings=True, bos_token_id=50256, eos_token_id=50256,
    )
    model = GPT2LMHeadModel(config)

    def value(variable):
        return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable, dtype=np.float32)

    state = {
        "transformer.wte.weight": value(backbone.token_embedding.embeddings),
        "transformer.wpe.weight": value(backbone.position_embedding.position_embeddings),
        "transformer.ln_f.weight": value(backbone.layer_norm.gamma),
        "transformer.ln_f.bias": value(backbone.layer_norm.beta),
    }
    for index, layer in enumerate(backbone.transformer_layers):
        attention = layer._self_attention_layer
        prefix = f"transformer.h.{index}."
        state[prefix + "ln_1.weight"] = value(layer._self_attention_layer_norm.gamma)
        state[prefix + "ln_1.bias"] = value(layer._self_attention_layer_norm.beta)
        state[prefix + "ln_2.weight"] = value(layer._feedforward_layer_norm.gamma)
        state[prefix + "ln_2.bias"] = value(layer._feedforward_layer_norm.beta)
        # EinsumDense kernels are (hidden, heads, head_dim) and biases (heads, head_dim).
        dense = (attention.query_dense, attention.key_dense, attention.value_dense)
        state[prefix + "attn.c_attn.weight"] = np.concatenate(
            [value(d.kernel).reshape(hidden, hidden) for d in dense], axis=1)
        state[prefix + "attn.c_attn.bias"] = np.concatenate([value(d.bias).reshape(hidden) for d in dense])
        # The output kernel is (heads, head_dim, hidden).
        state[prefix + "attn.c_proj.weight"] = value(attention.output_dense.kernel).reshape(hidden, hidden)
        state[prefix + "attn.c_proj.bias"] = value(attention.output_dense.bias)
        state[prefix + "mlp.c_fc.weight"] = value(layer._feedforward_intermediate_dense.kernel)
        state[prefix + "mlp.c_fc.bias"] = value(layer._feedforward_intermediate_dense.bias)
        state[prefix + "mlp.c_proj.weight"] = value(layer._feedforward_output_dense.kernel)
        state[prefix + "mlp.c_proj.bias"] = value(layer._feedforward_output_dense.bias)
    expected = {k for k in model.state_dict() if not k.endswith(("attn.bias", "attn.masked_bias"))}
    expected.discard("lm_head.weight")  # tied to wte
    missing = expected - set(state)
    if missing:
        raise SystemExit(f"weight copy incomplete: no value for {sorted(missing)[:5]}")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    result = model.load_state_dict(tensors, strict=False)
    unexpected_missing = [k for k in result.missing_keys if k != "lm_head.weight" and not k.endswith("attn.bias")]
    if unexpected_missing or result.unexpected_keys:
        raise SystemExit(f"weight copy failed: missing {unexpected_missing}, unexpected {result.unexpected_keys}")
    model.tie_weights()
    model.eval()
    model.generation_config.eos_token_id = None  # end-of-text is an ordinary token: exactly N new tokens
    model.generation_config.pad_token_id = 50256
    return model


def check_logits(causal_lm, hf_model, prompt_ids) -> float:
    import torch
    from keras import ops

    ids = np.asarray([prompt_ids], dtype=np.int32)
    keras_logits = ops.convert_to_numpy(causal_lm.backbone.token_embedding(
        causal_lm.backbone({"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}), reverse=True))
    with torch.no_grad():
        hf_logits = hf_model(torch.from_numpy(ids.astype(np.int64))).logits.numpy()
    difference = float(np.max(np.abs(keras_logits.astype(np.float32) - hf_logits)))
    if not difference < LOGIT_TOLERANCE:
        raise SystemExit(f"FAILED: the copied transformers model disagrees with Keras-Hub: max |logit difference| "
                         f"{difference:.2e} >= {LOGIT_TOLERANCE:g}")
    return difference


# --- timed runs ---------------------------------------------------------------------------------------------------

def run_gpt2chat(generator, prompt_ids, new_tokens):
    from gpt2chat.generation import SamplingConfig

    config = SamplingConfig(max_new_tokens=new_tokens, temperature=0.0)
    tokens, times = [], []
    started = time.perf_counter()
    for token in generator.stream_ids(prompt_ids, config):
        times.append(time.perf_counter())
        tokens.append(token)
    return tokens, started, times


def run_transformers(model, prompt_ids, new_tokens):
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Timestamps(BaseStreamer):
        def __init__(self):
            self.times, self.calls = [], 0

        def put(self, value):
            self.calls += 1
            if self.calls > 1:  # the first call hands over the prompt
                self.times.append(time.perf_counter())

        def end(self):
            pass

    input_ids = torch.tensor([prompt_ids], dtype=torch.long)
    streamer = Timestamps()
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False, num_beams=1,
            max_new_tokens=new_tokens, min_new_tokens=new_tokens, streamer=streamer, use_cache=True,
        )
    return [int(t) for t in output[0, len(prompt_ids):]], started, streamer.times


def summarise(samples):
    ttft = [times[0] - started for _, started, times in samples]
    rate = [(len(times) - 1) / (times[-1] - times[0]) for _, started, times in samples if len(times) > 1]
    return {
        "seconds_to_first_token": statistics.median(ttft),
        "tokens_per_second": statistics.median(rate) if rate else 0.0,
        "seconds_to_first_token_runs": [round(x, 4) for x in ttft],
        "tokens_per_second_runs": [round(x, 2) for x in rate],
        "new_tokens": len(samples[-1][0]),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import keras

    from gpt2chat.generation import StreamingGenerator

    causal_lm = build_keras(args)
    generator = StreamingGenerator(causal_lm, args.context_length,
                                   jit_compile={"auto": None, "on": True, "off": False}[args.jit])
    generator.end_token_id = None  # the end-of-text token is ordinary here: exactly --new-tokens tokens
    prompt_ids = generator.encode(args.prompt)
    backbone = causal_lm.backbone
    label = args.model or args.size
    result = {
        "model": label,
        "parameters": int(backbone.count_params()),
        "layout": {k: getattr(backbone, k) for k in ("num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                                                      "max_sequence_length")},
        "prompt_tokens": len(prompt_ids),
        "new_tokens": args.new_tokens,
        "runs": args.runs,
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
    import keras_hub

    result["versions"]["keras_hub"] = keras_hub.__version__
    implementations = {"gpt2chat": (run_gpt2chat, generator)}
    if not args.skip_transformers:
        import torch
        import transformers

        torch.set_num_threads(args.threads)
        result["versions"].update(torch=torch.__version__, transformers=transformers.__version__)
        hf_model = to_transformers(causal_lm)
        result["max_abs_logit_difference"] = check_logits(causal_lm, hf_model, prompt_ids)
        print(f"weights copied: max |logit difference| {result['max_abs_logit_difference']:.2e} "
              f"(< {LOGIT_TOLERANCE:g})", flush=True)
        implementations["transformers"] = (run_transformers, hf_model)

    samples = {name: [] for name in implementations}
    for run in range(args.warmup + args.runs):
        for name, (function, model) in implementations.items():
            tokens, started, times = function(model, prompt_ids, args.new_tokens)
            if len(tokens) != args.new_tokens:
                raise SystemExit(f"FAILED: {name} produced {len(tokens)} tokens, not {args.new_tokens}")
            if run >= args.warmup:
                samples[name].append((tokens, started, times))
            else:
                print(f"warm-up {name}: {times[-1] - started:.1f} s", flush=True)
    for name in implementations:
        result[name] = summarise(samples[name])
        result[name]["token_ids"] = samples[name][-1][0]
    result["gpt2chat"]["jit_compile"] = generator.jit_compile
    for function in ("_prefill", "_step"):  # traced once per bucket shape in use, never per token
        counter = getattr(getattr(generator, function), "experimental_get_tracing_count", None)
        if counter:
            result["gpt2chat"][f"{function[1:]}_traces"] = counter()

    if "transformers" in implementations:
        ours, theirs = result["gpt2chat"]["token_ids"], result["transformers"]["token_ids"]
        agree = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        result["identical_leading_tokens"] = agree
        result["speedup_tokens_per_second"] = (
            result["gpt2chat"]["tokens_per_second"] / result["transformers"]["tokens_per_second"])
        result["ttft_ratio"] = (
            result["gpt2chat"]["seconds_to_first_token"] / result["transformers"]["seconds_to_first_token"])
        # Runs alternate, so run k of each saw about the same load: the median of per-pair ratios is the figure
        # least moved by other processes on a shared machine.
        pairs = zip(result["gpt2chat"]["tokens_per_second_runs"], result["transformers"]["tokens_per_second_runs"])
        result["paired_speedup_tokens_per_second"] = statistics.median(a / b for a, b in pairs)

    print(f"\n{label}: {result['parameters']:,} parameters, prompt {len(prompt_ids)} tokens, "
          f"{args.new_tokens} new tokens, greedy, {args.threads} threads, median of {args.runs} runs")
    print(f"{'implementation':<16}{'first token (s)':>17}{'tokens/s':>11}{'best tokens/s':>15}")
    for name in implementations:
        print(f"{name:<16}{result[name]['seconds_to_first_token']:>17.3f}{result[name]['tokens_per_second']:>11.1f}"
              f"{max(result[name]['tokens_per_second_runs'] or [0]):>15.1f}")
    print(f"gpt2chat: XLA {'on' if generator.jit_compile else 'off'}; traces: prefill "
          f"{result['gpt2chat'].get('prefill_traces', '-')}, step {result['gpt2chat'].get('step_traces', '-')}")
    if "transformers" in implementations:
        print(f"gpt2chat / transformers: {result['speedup_tokens_per_second']:.2f}x tokens/s (median of paired runs "
              f"{result['paired_speedup_tokens_per_second']:.2f}x), {result['ttft_ratio']:.2f}x time to first token")
        print(f"greedy token ids identical for the first {result['identical_leading_tokens']} of "
              f"{args.new_tokens} tokens; first ids: {result['gpt2chat']['token_ids'][:8]}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    if "transformers" in implementations and result["identical_leading_tokens"] < min(args.compare_tokens,
                                                                                      args.new_tokens):
        print(f"FAILED: greedy ids differ at token {result['identical_leading_tokens']} "
              f"(expected the first {args.compare_tokens} to match)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
