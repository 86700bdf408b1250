"""Greedy CPU generation of the same GPT-2 weights in every candidate runtime, against this machine's bandwidth bound.

    python benchmarks/cpu_generation.py --size base --json base.json          # 124M layout, seeded random weights
    python benchmarks/cpu_generation.py --size small --runtimes keras,transformers,llama.cpp-q8_0
    python benchmarks/cpu_generation.py --model models/default                # a trained preset

Runtimes (--runtimes, comma-separated; default all): keras (gpt2chat's StreamingGenerator, today's serving path),
transformers (torch fp32, eager), onnxruntime (fp32) and onnxruntime-int8 (dynamic quantization), ctranslate2-int8,
llama.cpp-f16 and llama.cpp-q8_0 (llama-cpp-python), gpt2chat-export-int8 (``python -m gpt2chat.export``,
OpenVINO). A runtime whose package is missing is skipped with one line; the extras are in requirements-bench.txt
(see benchmarks/README.md: they live in their own venv, .venv-bench).

One run: the Keras-Hub model (a named size with weights seeded by --seed, saved as a preset, or --model DIR) is
exported to Hugging Face format with Keras-Hub's ``export_to_transformers`` and converted from there for each
runtime (benchmarks/conversions.py), so every runtime holds the same weights. Each runtime then runs in its own
process (benchmarks/runtimes.py), so its peak resident memory is its own; runs alternate between the runtimes
(each round: every runtime once on each prompt) after --warmup untimed rounds, and medians are reported.

* prompts: a short MedQuAD-style question (--prompt) and a grounded prompt of --long-prompt-tokens tokens (an NIH
  passage and earlier turns of the same MedQuAD document, kept from the end as the engine does);
* time to first token: from the call (prompt ids in hand) to the first new id, prefill included;
* tokens/s: (new tokens - 1) / (time of last token - time of first token) on the short prompt, the decode rate;
* peak memory: the runtime process's peak resident set (VmHWM, not ru_maxrss: runtimes.peak_rss_bytes), model
  loading included;
* bandwidth bound: this machine's memory bandwidth (a NumPy copy of --bandwidth-mib MiB, bytes read + written
  per second, the better of 1 and --threads threads) / bytes of weight matrices read per token (every layer's matrices and the
  tied LM head, at the runtime's bytes per weight); the KV cache and the activations are left out, so no runtime
  can reach it;
* equivalence: greedy ids against Keras's on both prompts; float32 runtimes must agree on the first
  --compare-tokens ids (the run fails otherwise), reduced-precision ones report how many leading ids agree.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent

import numpy as np  # noqa: E402

from gpt2chat.modeling.model import SIZES  # noqa: E402
from runtimes import RUNTIMES, missing_packages  # noqa: E402

DEFAULT_PROMPT = (
    "Question: What are the symptoms of glaucoma, and how is it treated?\n"
    "Answer:"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/cpu_generation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--size", default="base", choices=list(SIZES),
                        help="random seeded model of this size (default: base, the 124M layout)")
    source.add_argument("--model", help="a Keras-Hub GPT-2 preset directory (e.g. models/default) instead")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"comma-separated subset of: {', '.join(RUNTIMES)} (default: all)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="short prompt text (default: a MedQuAD-style "
                                                                  "question)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per run (default: 64)")
    parser.add_argument("--long-prompt-tokens", type=int, default=400,
                        help="length of the grounded prompt, 0 for none (default: 400; cut to fit the context)")
    parser.add_argument("--long-new-tokens", type=int, default=16,
                        help="tokens generated after the grounded prompt (default: 16)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: 1)")
    parser.add_argument("--compare-tokens", type=int, default=20,
                        help="leading greedy ids float32 runtimes must share with Keras (default: 20)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads per runtime (default: all "
                                                                            "cores)")
    parser.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                        help="keras runtime's XLA compilation: auto (by model width, the app's default), on or off")
    parser.add_argument("--seed", type=int, default=1337, help="weights seed for --size (default: 1337)")
    parser.add_argument("--bandwidth-mib", type=int, default=512, help="array copied to measure memory "
                                                                       "bandwidth (default: 512 MiB)")
    parser.add_argument("--workdir", help="keep the converted models here and reuse them (default: a temporary "
                                          "directory, removed at the end)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    args.runtimes = [name.strip() for name in args.runtimes.split(",") if name.strip()]
    unknown = [name for name in args.runtimes if name not in RUNTIMES]
    if unknown or not args.runtimes:
        parser.error(f"unknown runtime(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(RUNTIMES)}")
    for flag in ("new_tokens", "runs", "threads", "bandwidth_mib"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if min(args.warmup, args.long_prompt_tokens, args.long_new_tokens) < 0:
        parser.error("--warmup, --long-prompt-tokens and --long-new-tokens cannot be negative")
    if args.model and not Path(args.model).is_dir():
        parser.error(f"--model {args.model}: no such directory")
    return args


# --- the machine --------------------------------------------------------------------------------------------------

def measure_bandwidth(mib: int, threads: int, repeats: int = 5) -> dict:
    """Copy bandwidth (bytes read + written per second, best of ``repeats``) on 1 and on ``threads`` threads, each
    thread copying its own slice (NumPy releases the GIL while copying)."""
    source = np.ones(mib * 2**20 // 8, dtype=np.float64)
    target = np.empty_like(source)
    result = {"array_mib": mib}
    for count in sorted({1, threads}):
        slices = np.array_split(np.arange(source.size), count)
        bounds = [(int(s[0]), int(s[-1]) + 1) for s in slices]
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                list(pool.map(lambda b: np.copyto(target[b[0]:b[1]], source[b[0]:b[1]]), bounds))
                best = min(best, time.perf_counter() - started)
        result[f"gb_per_second_{count}_threads"] = 2 * source.nbytes / best / 1e9
    result["gb_per_second"] = max(v for k, v in result.items() if k.startswith("gb_per_second_"))
    return result


def weight_matrix_parameters(layout: dict, vocabulary: int) -> int:
    """Weights of the matrices one decode step reads: q/k/v/output and the MLP of every layer, and the tied LM
    head (the token and position embeddings contribute one row each)."""
    hidden, inner = layout["hidden_dim"], layout["intermediate_dim"]
    return layout["num_layers"] * (4 * hidden * hidden + 2 * hidden * inner) + vocabulary * hidden


# --- prompts ------------------------------------------------------------------------------------------------------

def grounded_prompt_ids(encode, tokens: int) -> list[int] | None:
    """``tokens`` ids of a grounded chat prompt built from real MedQuAD text (the passage of one answer and earlier
    turns about the same document), cut from the left like the engine's prompt budget; None without MedQuAD."""
    from gpt2chat.corpus.data import MedQuADNotFound, load_records
    from gpt2chat.modeling.prompt import build_prompt, reference_passage

    try:
        records, _ = load_records(limit_files=2)
    except MedQuADNotFound as error:
        print(f"no grounded prompt: {error}", flush=True)
        return None
    documents: dict[str, list] = {}
    for record in records:
        documents.setdefault(record.pair_id.rsplit("-", 1)[0], []).append(record)
    pairs = max(documents.values(), key=lambda group: sum(len(r.answer) for r in group))
    question, passage = pairs[0].question, reference_passage(pairs[0].answer)
    history: list[tuple[str, str]] = []
    for earlier in pairs[1:] + [p for group in documents.values() for p in group if p not in pairs]:
        ids = encode(build_prompt(question, reference=passage, history=history))
        if len(ids) >= tokens:
            return ids[-tokens:]
        history.insert(0, (earlier.question, reference_passage(earlier.answer)))
    return None


# --- conversions and worker processes -----------------------------------------------------------------------------

def worker_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}


def convert(name: str, hf_dir: Path, preset_dir: Path, workdir: Path, log: Path) -> tuple[Path | None, str]:
    """The runtime's artifact (made by conversions.py in its own process), or None and why not."""
    started = time.perf_counter()
    with log.open("a") as stderr:
        done = subprocess.run([sys.executable, str(HERE / "conversions.py"), name, str(hf_dir), str(preset_dir),
                               str(workdir)], stdout=subprocess.PIPE, stderr=stderr, text=True,
                              env=worker_env(os.cpu_count()))
    if done.returncode != 0:
        return None, f"conversion failed (exit {done.returncode}): {last_line(log)}; log: {log}"
    return Path(done.stdout.strip().splitlines()[-1]), f"converted in {time.perf_counter() - started:.0f} s"


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


class Worker:
    """One runtime in its own process, answering one request at a time (benchmarks/runtimes.py serve)."""

    def __init__(self, name: str, artifact: Path, args, log: Path):
        self.name, self.log = name, log
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "runtimes.py"), "serve", name, str(artifact), "--threads", str(args.threads),
             "--jit", args.jit], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("a"), text=True,
            env=worker_env(args.threads))
        self.ready = self.receive()

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            return {"error": f"the process ended (exit {self.process.wait()}): {last_line(self.log)}"}
        return json.loads(line)

    def ask(self, prompt_ids: list[int], new_tokens: int) -> dict:
        self.process.stdin.write(json.dumps({"prompt_ids": prompt_ids, "new_tokens": new_tokens}) + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self) -> int | None:
        """Stop the process; its peak resident memory in bytes, if it could say."""
        try:
            self.process.stdin.write(json.dumps({"quit": True}) + "\n")
            self.process.stdin.flush()
            peak = self.receive().get("peak_rss_bytes")
        except (BrokenPipeError, ValueError):
            peak = None
        self.process.wait(timeout=60)
        return peak


# --- results ------------------------------------------------------------------------------------------------------

def summarise(samples: list[dict]) -> dict:
    ttft = [s["times"][0] for s in samples]
    rate = [(len(s["times"]) - 1) / (s["times"][-1] - s["times"][0]) for s in samples if len(s["times"]) > 1]
    return {"seconds_to_first_token": statistics.median(ttft),
            "tokens_per_second": statistics.median(rate) if rate else None,
            "best_tokens_per_second": max(rate) if rate else None,
            "seconds_to_first_token_runs": [round(x, 4) for x in ttft],
            "tokens_per_second_runs": [round(x, 2) for x in rate],
            "token_ids": samples[-1]["tokens"]}


def agreement(ours: list[int], reference: list[int]) -> dict:
    from gpt2chat.modeling.export_check import agreement as leading_tokens

    return {"identical_leading_tokens": leading_tokens(reference, ours), "of": len(reference)}


def markdown_table(result: dict) -> str:
    long_tokens = result["prompts"].get("long")
    header = ["runtime", "weights", "first token (s)",
              *([f"first token, {long_tokens}-token prompt (s)"] if long_tokens else []),
              "tokens/s (median)", "tokens/s (best)", "bound (tokens/s)", "share of bound", "× transformers",
              "peak RSS (MB)", "greedy ids = Keras"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    reference = result["runtimes"].get("transformers", {}).get("short", {}).get("tokens_per_second")
    for name, entry in result["runtimes"].items():
        if "skipped" in entry:
            continue
        short, rate = entry["short"], entry["short"]["tokens_per_second"] or 0.0
        match = " / ".join(f"{a['identical_leading_tokens']}/{a['of']}" for a in entry.get("agreement", {}).values())
        cells = [name, entry["weights"], f"{short['seconds_to_first_token']:.3f}",
                 *([f"{entry['long']['seconds_to_first_token']:.3f}"] if long_tokens else []),
                 f"{rate:.1f}", f"{short['best_tokens_per_second'] or 0:.1f}", f"{entry['bound_tokens_per_second']:.0f}",
                 f"{rate / entry['bound_tokens_per_second']:.0%}",
                 f"{rate / reference:.2f}" if reference else "-",
                 f"{entry['peak_rss_bytes'] / 1e6:.0f}" if entry.get("peak_rss_bytes") else "-",
                 match or "(reference)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


WEIGHT_LABELS = {4.0: "fp32", 2.0: "fp16", 1.0: "int8", 34 / 32: "q8_0"}


def main(argv=None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores", flush=True)
    bandwidth = measure_bandwidth(args.bandwidth_mib, args.threads)
    print(f"memory bandwidth (copy, read + write): {bandwidth['gb_per_second']:.1f} GB/s", flush=True)

    import keras

    from gpt2chat.modeling.model import ModelUnavailable, build_causal_lm, load_preset

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpt2chat-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    workers: dict[str, Worker] = {}
    try:
        if args.model:
            preset_dir = Path(args.model)
            try:
                causal_lm = load_preset(preset_dir)
            except ModelUnavailable as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        else:
            preset_dir = workdir / f"keras-{args.size}-seed{args.seed}"
            keras.utils.set_random_seed(args.seed)
            causal_lm = build_causal_lm(args.size, 1024)
            causal_lm.save_to_preset(str(preset_dir))
        backbone = causal_lm.backbone
        layout = {k: getattr(backbone, k) for k in ("num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                                                     "max_sequence_length")}
        tokenizer = causal_lm.preprocessor.tokenizer

        def encode(text):
            return [int(i) for i in np.asarray(tokenizer(text)).reshape(-1)]

        prompts = {"short": encode(args.prompt)}
        long_tokens = min(args.long_prompt_tokens, layout["max_sequence_length"] - args.long_new_tokens)
        if long_tokens > 0 and args.long_new_tokens > 0:
            long_ids = grounded_prompt_ids(encode, long_tokens)
            if long_ids:
                prompts["long"] = long_ids
        new_tokens = {"short": args.new_tokens, "long": args.long_new_tokens}
        hf_dir = workdir / "hf"
        if set(args.runtimes) - {"keras", "gpt2chat-export-int8"}:
            from conversions import export_hf, is_current, mark_current

            if not is_current(hf_dir, preset_dir):
                export_hf(causal_lm, hf_dir)
                mark_current(hf_dir, preset_dir)
        del causal_lm

        matrix_weights = weight_matrix_parameters(layout, backbone.vocabulary_size)
        result = {"model": args.model or args.size, "parameters": int(backbone.count_params()), "layout": layout,
                  "prompts": {k: len(v) for k, v in prompts.items()}, "new_tokens": new_tokens, "runs": args.runs,
                  "threads": args.threads, "load_average": load, "bandwidth": bandwidth,
                  "weight_matrix_parameters": matrix_weights,
                  "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                              "python": platform.python_version()},
                  "runtimes": {}}
        for name in args.runtimes:
            runtime = RUNTIMES[name]
            log = workdir / "logs" / f"{name}.log"
            missing = missing_packages(name)
            if missing:
                why = f"not installed: {', '.join(missing)} (pip install -r requirements-bench.txt)"
            else:
                artifact, why = convert(name, hf_dir, preset_dir, workdir, log)
                if artifact is not None:
                    worker = Worker(name, artifact, args, log)
                    if "error" in worker.ready:
                        why = f"failed to load: {worker.ready['error']}"
                        worker.close()
                    else:
                        workers[name] = worker
                        why = f"{why}, loaded in {worker.ready['load_seconds']:.1f} s"
            print(f"{'ready' if name in workers else 'skipped'} {name}: {why}", flush=True)
            entry = {"weights": WEIGHT_LABELS[runtime.bytes_per_weight],
                     "bound_tokens_per_second": bandwidth["gb_per_second"] * 1e9
                     / (matrix_weights * runtime.bytes_per_weight)}
            result["runtimes"][name] = entry if name in workers else {"skipped": why}

        samples = {name: {kind: [] for kind in prompts} for name in workers}
        for round_index in range(args.warmup + args.runs):
            for name, worker in list(workers.items()):
                for kind, prompt_ids in prompts.items():
                    reply = worker.ask(prompt_ids, new_tokens[kind])
                    if "error" in reply or len(reply["tokens"]) != new_tokens[kind]:
                        why = reply.get("error") or f"{len(reply['tokens'])} tokens instead of {new_tokens[kind]}"
                        print(f"dropped {name}: {why}", flush=True)
                        result["runtimes"][name] = {"skipped": why}
                        workers.pop(name).close()
                        break
                    if round_index >= args.warmup:
                        samples[name][kind].append(reply)
            print(f"round {round_index + 1}/{args.warmup + args.runs}"
                  f"{' (warm-up)' if round_index < args.warmup else ''} done", flush=True)
        for name, worker in workers.items():
            entry = result["runtimes"][name]
            entry["peak_rss_bytes"] = worker.close()
            entry["load_seconds"] = worker.ready["load_seconds"]
            entry.update({kind: summarise(samples[name][kind]) for kind in prompts})
        result["load_average_end"] = os.getloadavg()
    finally:
        for worker in workers.values():
            if worker.process.poll() is None:
                worker.process.kill()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    failures = []
    keras_entry = result["runtimes"].get("keras", {})
    for name, entry in result["runtimes"].items():
        if name == "keras" or "skipped" in entry or "skipped" in keras_entry or not keras_entry:
            continue
        entry["agreement"] = {kind: agreement(entry[kind]["token_ids"], keras_entry[kind]["token_ids"])
                              for kind in prompts}
        needed = min(args.compare_tokens, args.new_tokens)
        if RUNTIMES[name].exact and entry["agreement"]["short"]["identical_leading_tokens"] < needed:
            failures.append(f"{name}: greedy ids differ from Keras at token "
                            f"{entry['agreement']['short']['identical_leading_tokens']} (expected {needed} equal)")

    print(f"\n{result['model']}: {result['parameters']:,} parameters, prompts {result['prompts']} tokens, "
          f"{args.new_tokens} new tokens ({args.long_new_tokens} after the long prompt), greedy, "
          f"{args.threads} threads, median of {args.runs} rounds; bandwidth {bandwidth['gb_per_second']:.1f} GB/s; "
          f"load average {load[0]:.1f} at the start, {result.get('load_average_end', load)[0]:.1f} at the end")
    print(markdown_table(result))
    for name, entry in result["runtimes"].items():
        if "skipped" in entry:
            print(f"skipped {name}: {entry['skipped']}")
    print("greedy ids = Keras: leading ids identical to Keras's, short prompt / long prompt")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
