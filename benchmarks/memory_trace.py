"""Where does a long-running server's memory go? Many messages through the engine (or Gradio's /ask), traced.

    .venv/bin/python benchmarks/memory_trace.py --model /tmp/soak_model --calls 1000 --no-tracemalloc
    .venv/bin/python benchmarks/memory_trace.py --model /tmp/soak_model --calls 1000 --no-tracemalloc \
        --no-memory-zone                                                    # the masker as it was before the fix
    .venv/bin/python benchmarks/memory_trace.py --model /tmp/soak_model --calls 300 --through-gradio --gate

It builds one ``ChatEngine`` (as the app does), warms it up, then answers ``--calls`` messages one after another
with the soak's message mix (benchmarks/soak.py: health questions and hostile input). Unless ``--fixed-messages``,
each question also carries a made-up word, the way real users keep writing names, typos and brands nobody wrote
before. ``--through-gradio`` serves the engine with ``gpt2chat.serving.ui.build_app`` on a loopback port inside
this process
and asks through ``gradio_client``'s ``/ask``; ``--gate`` runs the app's quality gate first (an untrusted model
answers with extracts only, as the app would serve it).

Every ``--every`` calls it records the resident memory (after ``malloc_trim``, so memory freed but kept by the C
allocator does not count), the size of the masker's spaCy StringStore and Python's traced allocations; at the end it
lists the source lines whose traced allocations grew most (tracemalloc, one frame), and the growth per 100 calls
over the second half of the run, after warm-up plateaus. The report holds counts and sizes only.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import importlib.util
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

MAX_CALLS = 20_000


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak", REPO_ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def made_up_word(rng: random.Random) -> str:
    """A word no vocabulary holds, like the names, typos and drug brands users write."""
    return "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(3, 5)))


def messages(count: int, hostile_share: float, seed: int, new_words: bool):
    soak = _soak_module()
    rng = random.Random(seed)
    for _ in range(count):
        kind, message = soak.message_mix(rng, hostile_share)
        if kind == "valid" and new_words:
            message = f"{message} My doctor mentioned {made_up_word(rng)}."
        yield message


def _trim_allocator() -> None:
    """Give freed heap pages back to the OS (glibc), so resident memory counts what is still in use."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def _gradio_asker(engine, sampling):
    """``/ask`` of the app's Gradio UI, served from this process on a free loopback port."""
    from gradio_client import Client

    from gpt2chat.serving.server import LOOPBACK, free_port
    from gpt2chat.serving.ui import build_app

    demo = build_app(engine).queue(default_concurrency_limit=2, max_size=64)
    port = free_port()
    demo.launch(server_name=LOOPBACK, server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://{LOOPBACK}:{port}/", verbose=False, analytics_enabled=False)

    def ask(message: str) -> None:
        try:
            client.predict(message, sampling.temperature, sampling.max_new_tokens, True, api_name="/ask")
        except Exception:  # noqa: BLE001 -- a refused message (gr.Error) is part of the mix; memory is the point
            pass

    return ask, demo.close


def trace(model: str, calls: int, every: int, *, hostile_share: float = 0.4, seed: int = 0, memory_zone: bool = True,
          top: int = 15, traced: bool = True, through_gradio: bool = False, gate: bool = False,
          new_words: bool = True, temperature: float = 0.7) -> dict:
    import psutil
    from tqdm import tqdm

    from gpt2chat.chat.engine import ChatEngine, EngineConfig
    from gpt2chat.modeling.generation import SamplingConfig
    from gpt2chat.guard.masking import MaskerConfig, PIIMasker

    process = psutil.Process()
    engine = ChatEngine.build(EngineConfig(model=model), masker=PIIMasker(MaskerConfig(memory_zone=memory_zone)))
    engine.warm_up()
    if gate:
        engine.gate()
    sampling = SamplingConfig(max_new_tokens=64, temperature=temperature)
    close = None
    if through_gradio:
        ask, close = _gradio_asker(engine, sampling)
    else:
        def ask(message: str) -> None:
            engine.reply(message, sampling=sampling)

    rows = []

    def record(number: int) -> None:
        gc.collect()
        _trim_allocator()
        row = {"calls": number, "rss_mb": round(process.memory_info().rss / 2**20, 1),
               "spacy_strings": len(engine.masker.nlp.vocab.strings)}
        if traced:
            row["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
        rows.append(row)

    if traced:
        tracemalloc.start()  # one frame: twelve made each call ~20x slower
    gc.collect()
    first = tracemalloc.take_snapshot() if traced else None
    record(0)
    started = time.perf_counter()
    for number, message in enumerate(tqdm(messages(calls, hostile_share, seed, new_words), total=calls, unit="call"),
                                     1):
        ask(message)
        if number % every == 0 or number == calls:
            record(number)
    seconds = time.perf_counter() - started
    second_half = [r for r in rows if r["calls"] >= calls / 2]
    report = {"model": model, "calls": calls, "through_gradio": through_gradio, "gated": gate,
              "model_text_shown": engine.status.trusted, "memory_zone": memory_zone, "new_words": new_words,
              "temperature": temperature,
              "seconds": round(seconds, 1), "samples": rows,
              "rss_growth_mb_per_100_calls_second_half": _per_100(second_half, "rss_mb"),
              "spacy_strings_added": rows[-1]["spacy_strings"] - rows[0]["spacy_strings"]}
    if traced:
        gc.collect()
        growth = [s for s in tracemalloc.take_snapshot().compare_to(first, "lineno") if s.size_diff > 0][:top]
        report["traced_growth_mb_per_100_calls_second_half"] = _per_100(second_half, "traced_mb")
        report["top_traced_growth"] = [{"where": str(stat.traceback[0]), "kib": round(stat.size_diff / 1024, 1),
                                        "blocks": stat.count_diff} for stat in growth]
    if close is not None:
        close()
    return report


def _per_100(rows: list[dict], key: str) -> float | None:
    if len(rows) < 2 or rows[-1]["calls"] == rows[0]["calls"]:
        return None
    return round((rows[-1][key] - rows[0][key]) / (rows[-1]["calls"] - rows[0]["calls"]) * 100, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/memory_trace.py", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="Keras-Hub preset directory (a tiny run is enough)")
    parser.add_argument("--calls", type=int, default=1000,
                        help=f"messages answered (default: 1000, at most {MAX_CALLS})")
    parser.add_argument("--every", type=int, default=100, help="sample memory every this many calls (default: 100)")
    parser.add_argument("--hostile-share", type=float, default=0.4, help="share of hostile messages (default: 0.4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the message mix")
    parser.add_argument("--top", type=int, default=15, help="source lines listed by allocation growth (default: 15)")
    parser.add_argument("--through-gradio", action="store_true",
                        help="ask through the Gradio app's /ask on a loopback port instead of the engine directly")
    parser.add_argument("--temperature", type=float, default=0.7,
                        help="sampling temperature of the answers (default: 0.7; 0 is greedy, with no sampler)")
    parser.add_argument("--gate", action="store_true", help="run the app's quality gate before the calls")
    parser.add_argument("--fixed-messages", action="store_true",
                        help="the soak's messages exactly, without a made-up word in each question")
    parser.add_argument("--no-memory-zone", action="store_true",
                        help="mask without spaCy's memory zone (the behaviour before the fix)")
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="resident memory only: tracing Python's allocations slows every call down")
    parser.add_argument("--out", help="write the report as JSON here too")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= MAX_CALLS or args.every < 1 or not 0 <= args.hostile_share <= 1:
        parser.error(f"--calls must be between 1 and {MAX_CALLS}, --every at least 1, --hostile-share in [0, 1]")
    if not (Path(args.model) / "config.json").is_file():
        parser.error(f"--model {args.model} is not a preset directory")
    report = trace(args.model, args.calls, args.every, hostile_share=args.hostile_share, seed=args.seed,
                   memory_zone=not args.no_memory_zone, top=args.top, traced=not args.no_tracemalloc,
                   through_gradio=args.through_gradio, gate=args.gate, new_words=not args.fixed_messages,
                   temperature=args.temperature)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
