"""Export a Keras-Hub GPT-2 preset (a run directory) to OpenVINO for fast CPU serving, and load it back.

The preset stays the source of truth: the export is written beside it (``rundir.EXPORT_DIR``) with a manifest
that fingerprints the weights it was made from, so a retrained model is never served from a stale export (the
engine then falls back to Keras). ``--check N`` measures the export against the Keras model on N held-out
test questions (``gpt2chat.modeling.export_check``, which holds the export command).

    python -m gpt2chat.export models/default                 # int8 weights (the default)
    python -m gpt2chat.export models/default --weights f32 --check 50

From Python::

    from gpt2chat.modeling.export import export_model, load_exported_generator, build_generator
    export_model("models/default")                      # -> Path of models/default/openvino
    generator = load_exported_generator("models/default", context_length=None)   # StreamingGenerator interface
    generator = build_generator(causal_lm, weights="int8")   # in memory, nothing written
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path

from gpt2chat.errors import CommandError
from gpt2chat.modeling import rundir
from gpt2chat.modeling.openvino_gpt2 import DEFAULT_THREADS, WEIGHT_FORMATS

FORMATS = ("openvino",)
log = logging.getLogger(__name__)


class ExportError(RuntimeError, CommandError):
    """An export that cannot be made or loaded (no preset, no export, a stale or unreadable one)."""


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def build_generator(causal_lm, weights: str = "int8", context_length: int | None = None, *,
                    threads: int = DEFAULT_THREADS):
    """An OpenVINO generator of an in-memory ``GPT2CausalLM`` (nothing written to disk)."""
    from gpt2chat.modeling.openvino_gpt2 import OpenVINOGenerator, build_model, compile_model

    backbone = causal_lm.backbone
    compiled = compile_model(build_model(backbone, weights), weights, threads)
    return OpenVINOGenerator(compiled, causal_lm.preprocessor.tokenizer, context_length,
                             max_sequence_length=backbone.max_sequence_length)


def export_model(model_dir: str | Path, weights: str = "int8", *, causal_lm=None, quiet: bool = True) -> Path:
    """Write the OpenVINO export of the preset in ``model_dir`` to ``model_dir/openvino`` and return that path.
    ``causal_lm``: the model the preset holds, when already loaded (saves loading it again)."""
    import openvino as ov

    from gpt2chat.modeling.model import ModelUnavailable, load_preset
    from gpt2chat.modeling.openvino_gpt2 import build_model

    root = Path(model_dir).expanduser()
    if weights not in WEIGHT_FORMATS:
        raise ExportError(f"unknown weights {weights!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    if not root.is_dir():
        raise ExportError(f"{root} does not exist or is not a directory")
    if not rundir.is_preset_dir(root) or not (root / rundir.PRESET_WEIGHTS).is_file():
        raise ExportError(f"{root} is not a Keras-Hub preset directory (no {rundir.PRESET_CONFIG} and "
                          f"{rundir.PRESET_WEIGHTS}); pass a run directory written by gpt2chat.modeling.train")
    started = time.perf_counter()
    fingerprint = rundir.weights_fingerprint(root)  # before loading: what the export is made from
    if causal_lm is None:
        _say(f"loading the preset in {root} ...", quiet)
        try:
            causal_lm = load_preset(root)
        except ModelUnavailable as error:
            raise ExportError(str(error)) from error
    _say(f"building the OpenVINO graph ({weights} weights) ...", quiet)
    model = build_model(causal_lm.backbone, weights)
    export = rundir.RunDirectory(root).export_dir
    partial = export.with_name(export.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    _say(f"saving to {export} ...", quiet)
    ov.save_model(model, partial / rundir.EXPORT_MODEL, compress_to_fp16=False)
    backbone = causal_lm.backbone
    manifest = {
        "format": "openvino",
        "weights": weights,
        "openvino": ov.get_version(),
        "weights_fingerprint": fingerprint,
        "max_sequence_length": backbone.max_sequence_length,
        "num_layers": backbone.num_layers,
        "hidden_dim": backbone.hidden_dim,
    }
    (partial / rundir.EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(export, ignore_errors=True)  # swapped by rename: a reader never sees half an export
    partial.rename(export)
    size = sum(f.stat().st_size for f in export.iterdir()) / 2**20
    _say(f"exported in {time.perf_counter() - started:.1f} s: {export} ({size:.0f} MiB)", quiet)
    return export


def read_manifest(model_dir: str | Path) -> dict:
    """The manifest of the current export of ``model_dir``; ``ExportError`` if there is none or it is stale."""
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        raise ExportError(f"{root} does not exist or is not a directory")
    export = rundir.exported_model(root)
    if export is None:
        if (root / rundir.EXPORT_DIR / rundir.EXPORT_MANIFEST).is_file():
            raise ExportError(f"the export in {root / rundir.EXPORT_DIR} was made from other weights than the "
                              f"preset holds now (retrained?); run: python -m gpt2chat.export {root}")
        raise ExportError(f"no OpenVINO export in {root}; run: python -m gpt2chat.export {root}")
    manifest = json.loads((export / rundir.EXPORT_MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("weights") not in WEIGHT_FORMATS or not isinstance(manifest.get("max_sequence_length"), int):
        raise ExportError(f"the manifest {export / rundir.EXPORT_MANIFEST} is incomplete; export again: "
                          f"python -m gpt2chat.export {root}")
    return manifest


def load_exported_generator(model_dir: str | Path, context_length: int | None = None, *, tokenizer=None,
                            threads: int = DEFAULT_THREADS):
    """The OpenVINO generator of the export beside the preset in ``model_dir`` (same interface as
    ``generation.StreamingGenerator``). ``tokenizer``: the preset's, when already loaded."""
    from gpt2chat.modeling.openvino_gpt2 import OpenVINOGenerator, compile_model

    root = Path(model_dir).expanduser()
    manifest = read_manifest(root)
    try:
        compiled = compile_model(root / rundir.EXPORT_DIR / rundir.EXPORT_MODEL, manifest["weights"], threads)
    except RuntimeError as error:  # OpenVINO reports a truncated or corrupt file as a RuntimeError
        lines = [line for line in str(error).splitlines() if line.strip()]  # the last one says what is wrong
        raise ExportError(f"the export in {root / rundir.EXPORT_DIR} cannot be read "
                          f"({lines[-1].strip() if lines else type(error).__name__}); "
                          f"export again: python -m gpt2chat.export {root}") from error
    if tokenizer is None:
        import keras_hub

        tokenizer = keras_hub.models.GPT2Tokenizer.from_preset(str(root))
    return OpenVINOGenerator(compiled, tokenizer, context_length,
                             max_sequence_length=int(manifest["max_sequence_length"]))


def serving_generator(model_dir: str | Path | None, context_length: int | None = None):
    """The exported generator when ``model_dir`` has a current export, else None (serve with Keras)."""
    if not model_dir or rundir.exported_model(model_dir) is None:
        return None
    return load_exported_generator(model_dir, context_length)


def export_and_load(model_dir: str | Path, causal_lm, context_length: int | None = None):
    """Export a freshly trained preset and load the export to serve it (seconds, next to a training run);
    None when that fails, which is logged: Keras then serves ``causal_lm``."""
    try:
        export_model(model_dir, causal_lm=causal_lm)
        return load_exported_generator(model_dir, context_length, tokenizer=causal_lm.preprocessor.tokenizer)
    except (ExportError, RuntimeError, OSError) as error:  # OpenVINO raises RuntimeError
        log.warning("serving with Keras: the export of %s failed (%s)", model_dir, error)
        return None
