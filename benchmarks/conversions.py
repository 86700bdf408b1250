"""The same GPT-2 weights in every runtime's format: Keras-Hub preset → Hugging Face → ONNX, CTranslate2, GGUF.

The Keras-Hub preset is the source: ``export_hf`` writes it in Hugging Face format with Keras-Hub's own
``export_to_transformers``; every other format is converted from that directory by the runtime's own converter
(torch.onnx, ``onnxruntime.quantization``, CTranslate2's ``TransformersConverter``, llama.cpp's
``convert_hf_to_gguf.py``), or by gpt2chat's export for its own serving path. Each conversion runs in its own
process (started by cpu_generation.py), so the benchmark's parent never imports torch:

    python benchmarks/conversions.py RUNTIME HF_DIR PRESET_DIR OUT_DIR     (prints the artifact's path last)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


from gpt2chat.modeling import rundir  # noqa: E402

LLAMA_CPP_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpt2chat-bench"


def export_hf(causal_lm, out: Path) -> Path:
    """Keras-Hub → Hugging Face (config, safetensors, vocab.json, merges.txt). llama.cpp's converter also needs
    ``architectures`` and ``n_ctx`` in config.json, which Keras-Hub 0.32 does not write."""
    causal_lm.export_to_transformers(str(out))
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config.update(architectures=["GPT2LMHeadModel"], n_ctx=config["n_positions"], tie_word_embeddings=True)
    config_path.write_text(json.dumps(config, indent=2))
    return out


def _layout(hf_dir: Path) -> dict:
    config = json.loads((hf_dir / "config.json").read_text())
    return {"layers": config["n_layer"], "heads": config["n_head"], "head_dim": config["n_embd"] // config["n_head"],
            "context": config["n_positions"]}


def export_onnx(hf_dir: Path, out: Path) -> Path:
    """A one-graph GPT-2 for ONNX Runtime: (input_ids, past) → (last-position logits, present), the key/value
    cache of all layers stacked as (layers, 2, 1, heads, positions, head_dim), so prefill and decode steps are
    the same graph. Written with the HF model's own weights and modules (layer norms, embeddings); attention
    and the MLP are spelled as plain MatMuls so that ``quantize_dynamic`` quantizes every weight matrix."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    layout = _layout(hf_dir)
    heads, head_dim = layout["heads"], layout["head_dim"]
    hidden = heads * head_dim

    class CachedGPT2(torch.nn.Module):
        def __init__(self, transformer):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, past):
            t = self.transformer
            length = input_ids.shape[1]
            positions = past.shape[4] + torch.arange(length)
            x = t.wte(input_ids) + t.wpe(positions)[None]
            allowed = torch.arange(past.shape[4] + length)[None, :] <= positions[:, None]
            presents = []
            for index, block in enumerate(t.h):
                qkv = block.ln_1(x) @ block.attn.c_attn.weight + block.attn.c_attn.bias
                q, k, v = (z.reshape(1, length, heads, head_dim).transpose(1, 2) for z in qkv.split(hidden, dim=2))
                k = torch.cat([past[index, 0], k], dim=2)
                v = torch.cat([past[index, 1], v], dim=2)
                presents.append(torch.stack([k, v]))
                scores = (q @ k.transpose(2, 3)) / math.sqrt(head_dim)
                attention = scores.masked_fill(~allowed, torch.finfo(torch.float32).min).softmax(-1) @ v
                attention = attention.transpose(1, 2).reshape(1, length, hidden)
                x = x + attention @ block.attn.c_proj.weight + block.attn.c_proj.bias
                h = block.ln_2(x) @ block.mlp.c_fc.weight + block.mlp.c_fc.bias
                x = x + torch.nn.functional.gelu(h, approximate="tanh") @ block.mlp.c_proj.weight + block.mlp.c_proj.bias
            return t.ln_f(x[:, -1]) @ t.wte.weight.T, torch.stack(presents)

    out.mkdir(parents=True, exist_ok=True)
    example_ids = torch.zeros((1, 5), dtype=torch.long)
    example_past = torch.zeros((layout["layers"], 2, 1, heads, 3, head_dim))
    with torch.no_grad():
        torch.onnx.export(
            CachedGPT2(model.transformer), (example_ids, example_past), str(out / "model.onnx"), dynamo=False,
            input_names=["input_ids", "past"], output_names=["logits", "present"], opset_version=17,
            dynamic_axes={"input_ids": {1: "length"}, "past": {4: "past_length"}, "present": {4: "total_length"}},
        )
    (out / "layout.json").write_text(json.dumps(layout))
    return out


def quantize_onnx(fp32_dir: Path, out: Path) -> Path:
    """Dynamic int8 quantization of every MatMul weight (activations quantized on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(fp32_dir / "model.onnx"), str(out / "model.onnx"), weight_type=QuantType.QInt8)
    shutil.copy(fp32_dir / "layout.json", out / "layout.json")
    return out


def convert_ctranslate2(hf_dir: Path, out: Path) -> Path:
    import ctranslate2

    ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(out), quantization="int8", force=True)
    return out


def llama_cpp_converter(cache: Path = LLAMA_CPP_CACHE) -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py`` (with its ``conversion`` and ``gguf-py`` packages) from the source
    distribution of the installed llama-cpp-python, fetched once with pip into ``cache``: the wheel has no
    converter, and the converter must match the llama.cpp that will read its output."""
    from importlib.metadata import version

    release = version("llama_cpp_python")
    root = cache / f"llama.cpp-{release}"
    script = root / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    with tempfile.TemporaryDirectory() as download:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={release}", "-d", download], check=True)
        archive = next(Path(download).glob("llama_cpp_python-*.tar.gz"))
        prefix = f"{archive.name[:-len('.tar.gz')]}/vendor/llama.cpp/"
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)
                       and m.name[len(prefix):].startswith(wanted)]
            for member in members:
                member.name = member.name[len(prefix):]
            root.mkdir(parents=True, exist_ok=True)
            tar.extractall(root, members=members, filter="data")
    return script


def convert_gguf(hf_dir: Path, out: Path, outtype: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(llama_cpp_converter()), str(hf_dir), "--outfile", str(out / "model.gguf"),
                    "--outtype", outtype], check=True, stdout=sys.stderr)
    (out / "layout.json").write_text(json.dumps(_layout(hf_dir)))
    return out


def export_gpt2chat(preset_dir: Path, out: Path) -> Path:
    """gpt2chat's own export (int8), made in ``out``: a directory of links to the preset's files, so that the
    export of a --model directory the app serves is left as it is. Made again at every run, never reused: it is
    the code under test, and an export from older code has the same weights fingerprint."""
    from gpt2chat.modeling.export import export_model

    out.mkdir(parents=True, exist_ok=True)
    for item in preset_dir.resolve().iterdir():
        if item.name not in (rundir.EXPORT_DIR, rundir.CHECKPOINTS) and not (out / item.name).exists():
            (out / item.name).symlink_to(item)
    export_model(out, "int8")
    return out


def _stamp(target: Path) -> Path:
    return target / "made_from.json"


def is_current(target: Path, preset_dir: Path) -> bool:
    """Whether ``target`` was converted from the weights ``preset_dir`` holds now (an earlier run's --workdir)."""
    try:
        return json.loads(_stamp(target).read_text()) == {"weights_fingerprint": rundir.weights_fingerprint(preset_dir)}
    except (OSError, ValueError):
        return False


def mark_current(target: Path, preset_dir: Path) -> None:
    _stamp(target).write_text(json.dumps({"weights_fingerprint": rundir.weights_fingerprint(preset_dir)}))


MAKERS = {
    "onnxruntime": ("onnx", export_onnx),
    "onnxruntime-int8": ("onnx-int8", None),  # quantized from the fp32 graph
    "ctranslate2-int8": ("ctranslate2-int8", convert_ctranslate2),
    "llama.cpp-f16": ("gguf-f16", lambda hf_dir, out: convert_gguf(hf_dir, out, "f16")),
    "llama.cpp-q8_0": ("gguf-q8_0", lambda hf_dir, out: convert_gguf(hf_dir, out, "q8_0")),
}


def convert(runtime: str, hf_dir: Path, preset_dir: Path, out: Path) -> Path:
    """The artifact ``runtime`` loads, made under ``out`` unless an earlier run made it from the same weights."""
    if runtime == "keras":
        return preset_dir
    if runtime == "transformers":
        return hf_dir
    if runtime == "gpt2chat-export-int8":
        return export_gpt2chat(preset_dir, out / "gpt2chat-export")
    if runtime not in MAKERS:
        raise ValueError(f"no conversion for {runtime!r}")
    name, make = MAKERS[runtime]
    target = out / name
    if is_current(target, preset_dir):
        return target
    shutil.rmtree(target, ignore_errors=True)
    if runtime == "onnxruntime-int8":
        quantize_onnx(convert("onnxruntime", hf_dir, preset_dir, out), target)
    else:
        make(hf_dir, target)
    mark_current(target, preset_dir)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/conversions.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runtime", help="a runtime name of benchmarks/runtimes.py")
    parser.add_argument("hf_dir", type=Path, help="the Hugging Face export of the preset (export_hf)")
    parser.add_argument("preset_dir", type=Path, help="the Keras-Hub preset directory")
    parser.add_argument("out", type=Path, help="directory for the converted files")
    args = parser.parse_args(argv)
    sys.stdout.flush()
    print(convert(args.runtime, args.hf_dir, args.preset_dir, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
