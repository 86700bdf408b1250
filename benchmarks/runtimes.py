"""One greedy streaming decoder per CPU runtime, each served from its own process (see cpu_generation.py).

Every runtime decodes greedily from prompt token ids for exactly ``new_tokens`` tokens (the end-of-text token is
an ordinary token everywhere, so nobody stops early) and time-stamps each new token as it comes out. A worker
process loads one runtime, then answers requests on its standard input with JSON lines on its original standard
output (everything the libraries print is sent to standard error), so that the parent can alternate runs between
runtimes and read each runtime's own peak memory.

    python benchmarks/runtimes.py serve RUNTIME ARTIFACT --threads 2      (started by cpu_generation.py)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator


import numpy as np  # noqa: E402


class Runtime:
    """``load`` the artifact; ``stream`` yields ``new_tokens`` greedy ids."""

    packages: tuple[str, ...] = ()  # import names that must be installed
    bytes_per_weight = 4.0  # bytes read per matrix weight, for the memory-bandwidth bound
    exact = True  # float32 weights: greedy ids must equal Keras's

    def __init__(self, artifact: Path, threads: int):
        self.artifact, self.threads = artifact, threads

    def stream(self, prompt_ids: list[int], new_tokens: int) -> Iterator[int]:
        raise NotImplementedError


class KerasRuntime(Runtime):
    """gpt2chat's own ``StreamingGenerator`` (Keras-Hub on TensorFlow), the app's serving path today."""

    packages = ("tensorflow", "keras_hub")

    def __init__(self, artifact, threads, jit_compile=None):
        super().__init__(artifact, threads)
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        from gpt2chat.modeling.generation import StreamingGenerator
        from gpt2chat.modeling.model import load_preset

        self.generator = StreamingGenerator(load_preset(artifact), jit_compile=jit_compile)
        self.generator.end_token_id = None

    def stream(self, prompt_ids, new_tokens):
        from gpt2chat.modeling.generation import SamplingConfig

        yield from self.generator.stream_ids(prompt_ids, SamplingConfig(max_new_tokens=new_tokens, temperature=0.0))


class ExportRuntime(KerasRuntime):
    """gpt2chat's own fast serving path (``python -m gpt2chat.export``: OpenVINO, int8 weights)."""

    packages = ("openvino", "keras_hub")
    bytes_per_weight = 1.0
    exact = False

    def __init__(self, artifact, threads):
        Runtime.__init__(self, artifact, threads)
        from gpt2chat.modeling.export import load_exported_generator

        self.generator = load_exported_generator(artifact, threads=threads)
        self.generator.end_token_id = None
        self.generator.warm_up()


class TransformersRuntime(Runtime):
    """Hugging Face ``transformers``, torch float32, eager (no ``torch.compile``), its default attention."""

    packages = ("torch", "transformers")

    def __init__(self, artifact, threads):
        super().__init__(artifact, threads)
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self.model = AutoModelForCausalLM.from_pretrained(artifact, dtype=torch.float32).eval()
        self.model.generation_config.eos_token_id = None  # exactly new_tokens tokens
        self.model.generation_config.pad_token_id = 50256

    def stream(self, prompt_ids, new_tokens):
        import queue
        import threading

        import torch
        from transformers.generation.streamers import BaseStreamer

        tokens: queue.Queue = queue.Queue()

        class Streamer(BaseStreamer):
            first = True

            def put(self, value):
                if self.first:  # the first call hands over the prompt
                    self.first = False
                    return
                tokens.put(int(value.reshape(-1)[0]))

            def end(self):
                tokens.put(None)

        def generate():
            input_ids = torch.tensor([prompt_ids], dtype=torch.long)
            with torch.inference_mode():
                self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                    num_beams=1, max_new_tokens=new_tokens, streamer=Streamer(), use_cache=True)

        worker = threading.Thread(target=generate)
        worker.start()
        while (token := tokens.get()) is not None:
            yield token
        worker.join()


class OnnxRuntime(Runtime):
    """ONNX Runtime on the graph that conversions.export_onnx writes (the cache is a graph input and output)."""

    packages = ("onnxruntime",)

    def __init__(self, artifact, threads):
        super().__init__(artifact, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(artifact / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.layout = json.loads((artifact / "layout.json").read_text())

    def stream(self, prompt_ids, new_tokens):
        import onnxruntime as ort

        layout = self.layout
        past = ort.OrtValue.ortvalue_from_numpy(np.zeros(
            (layout["layers"], 2, 1, layout["heads"], 0, layout["head_dim"]), dtype=np.float32))
        ids = np.asarray([prompt_ids], dtype=np.int64)
        for _ in range(new_tokens):
            binding = self.session.io_binding()  # the cache stays an OrtValue: never copied to NumPy
            binding.bind_cpu_input("input_ids", ids)
            binding.bind_ortvalue_input("past", past)
            binding.bind_output("logits")
            binding.bind_output("present")
            self.session.run_with_iobinding(binding)
            logits, past = binding.get_outputs()
            token = int(np.argmax(logits.numpy()[0]))
            yield token
            ids = np.asarray([[token]], dtype=np.int64)


class OnnxInt8Runtime(OnnxRuntime):
    """The same graph after ``onnxruntime.quantization.quantize_dynamic`` (int8 MatMul weights)."""

    bytes_per_weight = 1.0
    exact = False


class CTranslate2Runtime(Runtime):
    """CTranslate2 ``Generator`` with int8 weights (``TransformersConverter(..., quantization="int8")``)."""

    packages = ("ctranslate2",)
    bytes_per_weight = 1.0
    exact = False

    def __init__(self, artifact, threads):
        super().__init__(artifact, threads)
        import ctranslate2

        self.generator = ctranslate2.Generator(str(artifact), device="cpu", compute_type="int8",
                                               intra_threads=threads, inter_threads=1)
        self.vocabulary = json.loads((artifact / "vocabulary.json").read_text())

    def stream(self, prompt_ids, new_tokens):
        prompt = [self.vocabulary[i] for i in prompt_ids]
        # end_token=[]: no token ends decoding; max_length counts new tokens only.
        steps = self.generator.generate_tokens(prompt, max_length=new_tokens, sampling_topk=1, end_token=[])
        for step in steps:
            yield int(step.token_id)


class LlamaCppRuntime(Runtime):
    """llama.cpp through ``llama-cpp-python`` on a GGUF file (f16 or q8_0 weights)."""

    packages = ("llama_cpp",)

    def __init__(self, artifact, threads):
        super().__init__(artifact, threads)
        from llama_cpp import Llama

        layout = json.loads((artifact / "layout.json").read_text())
        self.model = Llama(str(artifact / "model.gguf"), n_ctx=layout["context"], n_batch=512, n_threads=threads,
                           n_threads_batch=threads, verbose=False)

    def stream(self, prompt_ids, new_tokens):
        # Llama.generate never stops by itself; top_k=1 with temperature 0 is greedy. Without reset() it would
        # reuse the previous run's cache for a repeated prompt and skip the prefill being timed.
        self.model.reset()
        steps = self.model.generate(prompt_ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                                    reset=True)
        for count, token in enumerate(steps, 1):
            yield int(token)
            if count == new_tokens:
                break


class LlamaCppF16Runtime(LlamaCppRuntime):
    bytes_per_weight = 2.0
    exact = False  # float16 weights: report the agreement rate


class LlamaCppQ8Runtime(LlamaCppRuntime):
    bytes_per_weight = 34 / 32  # q8_0: 32 int8 weights and one float16 scale per block
    exact = False


# name -> runtime; the order is the table's.
RUNTIMES: dict[str, type[Runtime]] = {
    "keras": KerasRuntime,
    "transformers": TransformersRuntime,
    "onnxruntime": OnnxRuntime,
    "onnxruntime-int8": OnnxInt8Runtime,
    "ctranslate2-int8": CTranslate2Runtime,
    "llama.cpp-f16": LlamaCppF16Runtime,
    "llama.cpp-q8_0": LlamaCppQ8Runtime,
    "gpt2chat-export-int8": ExportRuntime,
}


def missing_packages(name: str) -> list[str]:
    import importlib.util

    return [package for package in RUNTIMES[name].packages if importlib.util.find_spec(package) is None]


def peak_rss_bytes() -> int:
    """This process's peak resident set. Not ``ru_maxrss``: Linux carries the parent's peak across fork + exec
    into it (every runtime then showed the benchmark parent's 1.1 GB), while VmHWM starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (peak memory is measured on Linux only)")


def timed_stream(runtime: Runtime, prompt_ids: list[int], new_tokens: int) -> dict:
    """Token ids, time to first token and the time of every later token (seconds from the call)."""
    tokens, times = [], []
    started = time.perf_counter()
    for token in runtime.stream(prompt_ids, new_tokens):
        times.append(time.perf_counter() - started)
        tokens.append(token)
    return {"tokens": tokens, "times": times}


def serve(name: str, artifact: Path, threads: int, jit: str) -> int:
    """Load one runtime, then answer {"prompt_ids", "new_tokens"} lines until {"quit": true}."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library output must not corrupt the protocol
    sys.stdout = sys.stderr

    def reply(payload):
        protocol.write(json.dumps(payload) + "\n")
        protocol.flush()

    started = time.perf_counter()
    try:
        if name == "keras":
            runtime = KerasRuntime(artifact, threads, jit_compile={"auto": None, "on": True, "off": False}[jit])
        else:
            runtime = RUNTIMES[name](artifact, threads)
    except Exception as error:  # reported to the parent as one line: the run goes on without this runtime
        reply({"error": f"{type(error).__name__}: {error}"})
        return 1
    reply({"ready": True, "load_seconds": time.perf_counter() - started, "rss_after_load": peak_rss_bytes()})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        try:
            reply(timed_stream(runtime, request["prompt_ids"], request["new_tokens"]))
        except Exception as error:
            reply({"error": f"{type(error).__name__}: {error}"})
    reply({"peak_rss_bytes": peak_rss_bytes()})
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/runtimes.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="load one runtime and answer JSON requests on stdin")
    serving.add_argument("runtime", choices=list(RUNTIMES))
    serving.add_argument("artifact", type=Path, help="what conversions.py wrote for this runtime")
    serving.add_argument("--threads", type=int, default=os.cpu_count())
    serving.add_argument("--jit", choices=("auto", "on", "off"), default="auto", help="keras only: XLA")
    args = parser.parse_args(argv)
    return serve(args.runtime, args.artifact, args.threads, args.jit)


if __name__ == "__main__":
    sys.exit(main())
