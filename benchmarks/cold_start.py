"""The chat app's cold start: a fresh process from ``python`` to its first answer, phase by phase.

    python benchmarks/cold_start.py                       # models/default if it is a preset, else a random `small`
    python benchmarks/cold_start.py --model models/default --runs 3 --json cold.json
    python benchmarks/cold_start.py --parallel            # also time the start-up as ChatEngine.build does it (masker + index on a thread)
    python benchmarks/cold_start.py --keras               # serve with Keras even when the model has an OpenVINO export

Each measurement runs in a new subprocess (nothing imported or compiled beforehand) that does what the app does
at start-up (``ChatEngine.build`` then ``ChatEngine.warm_up``) and then answers one question:

    import       import gpt2chat.chat.engine and Keras-Hub (TensorFlow, Keras)
    model        load the model's OpenVINO export when it has a current one (``gpt2chat.modeling.export``), as the app
                 does, else the preset (``gpt2chat.modeling.model.load_preset``)
    masker       build the PII masker (Presidio, spaCy)
    index        the BM25 retrieval index: read from its cache, or built from MedQuAD and cached (cold cache)
    compile      ``ChatEngine.warm_up``: compiles the prefill and step functions on a short grounded question
    answer       one grounded answer of up to --new-tokens greedy tokens (its time to first token is reported too)

"cold cache" runs with an empty ``GPT2CHAT_CACHE`` directory, so the retrieval index is built from the MedQuAD
XML; "warm cache" runs again on the cache that run left, as every later start of the app does. ``--parallel``
adds runs where the masker and the index are built on a second thread while the model loads and compiles
(what ``ChatEngine.build`` does), then warms up as the app does. Python's own start-up is included in
``total`` (the wall time the parent saw), not in the phases.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHASES = ("import", "model", "masker", "index", "compile", "answer")
QUESTION = "How is glaucoma treated?"


def child(args) -> None:
    """One cold start, in this fresh process; prints one JSON line of phase seconds."""
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    times: dict[str, float] = {}

    def mark(name, since):
        now = time.perf_counter()
        times[name] = now - since
        return now

    import gpt2chat.chat.engine as engine_module
    import keras_hub  # noqa: F401  (TensorFlow and Keras come with it)

    now = mark("import", started)
    from gpt2chat.modeling.generation import SamplingConfig
    from gpt2chat.guard.masking import PIIMasker
    from gpt2chat.modeling.model import load_preset
    from gpt2chat.search.retrieval import RetrievalIndex

    config = engine_module.EngineConfig(model=args.model, data=args.data, use_export=not args.keras)
    if args.parallel:  # what the app does: the factory loads the masker and the index beside the model
        engine = engine_module.ChatEngine.build(config)
        now = mark("model+masker+index", now)
    else:
        generator = engine_module.exported_generator(config.model, None) if config.use_export else None
        causal_lm = load_preset(config.model) if generator is None else None
        now = mark("model", now)
        masker = PIIMasker()
        now = mark("masker", now)
        index = RetrievalIndex.load_or_build(config.data)
        now = mark("index", now)
        from gpt2chat.guard.emergency import build_detector
        from gpt2chat.guard.safety import SafetyPolicy

        engine = engine_module.ChatEngine(causal_lm, index, masker=masker, safety=SafetyPolicy(build_detector()),
                                          config=config, generator=generator)
    engine.warm_up()
    now = mark("compile", now)
    reply = engine.reply(QUESTION, grounded=True,
                         sampling=SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.0))
    now = mark("answer", now)
    times["ready"] = sum(v for k, v in times.items() if k != "answer")
    times["in_process"] = now - started
    stats = reply.stats
    times["answer_first_token"] = stats.seconds_to_first_token if stats else float("nan")
    times["answer_tokens"] = stats.new_tokens if stats else 0
    times["answer_tokens_per_second"] = stats.tokens_per_second if stats else 0.0
    times["runtime"] = type(engine.generator).__name__
    print("COLD_START " + json.dumps(times), flush=True)


def run_child(args, cache_dir: str, parallel: bool) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", args.model,
               "--new-tokens", str(args.new_tokens)]
    if args.data:
        command += ["--data", args.data]
    if parallel:
        command.append("--parallel")
    if args.keras:
        command.append("--keras")
    env = {**os.environ, "GPT2CHAT_CACHE": cache_dir, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    line = next((l for l in done.stdout.splitlines() if l.startswith("COLD_START ")), None)
    if done.returncode or line is None:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"cold-start subprocess failed (exit {done.returncode})")
    result = json.loads(line[len("COLD_START "):])
    result["total"] = wall
    return result


def default_model(workdir: Path) -> str:
    """models/default when it holds a preset, else a freshly saved random `small` preset."""
    default = REPO / "models" / "default"
    if (default / "config.json").is_file():  # the benchmark runs without importing the package
        return str(default)
    target = workdir / "small-preset"
    print(f"{default} holds no preset: saving a random `small` preset to {target}", flush=True)
    code = ("import keras; keras.utils.set_random_seed(0); "
            "from gpt2chat.modeling.model import build_causal_lm; build_causal_lm('small', 256).save_to_preset(%r)"
            % str(target))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return str(target)


def median_of(results: list[dict]) -> dict:
    keys = [k for k in results[0] if all(isinstance(r.get(k), (int, float)) for r in results)]
    return {k: statistics.median(r[k] for r in results) for k in keys}


def print_table(rows: dict[str, dict]) -> None:
    columns = list(rows)
    names = []
    for row in rows.values():
        names += [k for k in row if k not in names and k not in ("answer_tokens", "runtime")]
    print(f"{'phase (s)':<26}" + "".join(f"{c:>22}" for c in columns))
    for name in names:
        cells = "".join(f"{rows[c][name]:>22.2f}" if name in rows[c] else f"{'':>22}" for c in columns)
        print(f"{name:<26}{cells}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/cold_start.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="preset directory (default: models/default, else a random `small` preset)")
    parser.add_argument("--data", help="MedQuAD directory (default: the app's)")
    parser.add_argument("--runs", type=int, default=1, help="warm-cache runs per mode; medians (default: 1)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens in the timed answer (default: 32)")
    parser.add_argument("--parallel", action="store_true",
                        help="also measure the masker and index built on a thread while the model loads")
    parser.add_argument("--keras", action="store_true",
                        help="serve with Keras even when the model has a current OpenVINO export")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    with tempfile.TemporaryDirectory(prefix="gpt2chat-cold-") as workdir:
        args.model = args.model or default_model(Path(workdir))
        cache = str(Path(workdir) / "cache")
        results: dict[str, dict] = {}
        print(f"model {args.model}; cold cache in {cache}", flush=True)
        results["cold cache"] = run_child(args, cache, parallel=False)
        print(f"cold cache: ready in {results['cold cache']['total']:.1f} s wall, served by "
              f"{results['cold cache']['runtime']}", flush=True)
        if args.parallel:
            results["cold cache, parallel"] = run_child(args, str(Path(workdir) / "cache-parallel"), parallel=True)
            print(f"cold cache, parallel: {results['cold cache, parallel']['total']:.1f} s wall", flush=True)
        modes = [("warm cache", False)] + ([("warm cache, parallel", True)] if args.parallel else [])
        samples: dict[str, list] = {name: [] for name, _ in modes}
        for _ in range(args.runs):  # alternate modes so both see the same machine load
            for name, parallel in modes:
                samples[name].append(run_child(args, cache, parallel))
                print(f"{name}: {samples[name][-1]['total']:.1f} s wall", flush=True)
        for name, _ in modes:
            results[name] = median_of(samples[name])
    print(f"\ncold start of {args.model} (warm-cache columns: median of {args.runs} runs)")
    print_table(results)
    print("total = wall time of the subprocess, Python start-up included; ready = the phases before the answer")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "runs": args.runs, "results": results,
                                               "samples": samples}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
