"""The layout of a model directory, in one place: what a training run writes and what a served model needs.

    models/default/                 a Keras-Hub preset (``GPT2CausalLM.from_preset`` loads it) ...
        config.json, model.weights.h5, tokenizer.json, preprocessor.json, assets/   (written by save_to_preset)
        training_config.json        ... plus, for a run of ``gpt2chat.modeling.train``, its settings,
        metrics.json                the validation history and summary,
        split.json                  the pair ids of each split,
        checkpoints/                and resumable training state (never served or uploaded);
        openvino/                   ``gpt2chat.modeling.export``'s fast serving copy (model.xml/.bin, export.json),
                                    used only while export.json's fingerprint matches model.weights.h5.

Everything else (the app, deploy, the comparison report) asks this module rather than naming files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

PRESET_CONFIG = "config.json"
TRAINING_CONFIG = "training_config.json"
METRICS = "metrics.json"
SPLIT = "split.json"
CHECKPOINTS = "checkpoints"  # resumable training state: large, and serving never reads it
PRESET_WEIGHTS = "model.weights.h5"  # written by save_to_preset
EXPORT_DIR = "openvino"  # the OpenVINO export of the preset (gpt2chat.modeling.export)
EXPORT_MODEL = "model.xml"  # with model.bin beside it
EXPORT_MANIFEST = "export.json"  # what was exported from which weights
# Settings a run may resume with changed: the devices change where a step runs, not what it computes
# (the same global batches and loss), so a run started on 2 GPUs can finish on 1.
RESUMABLE_CHANGES = ("devices", "model_parallel")
# Settings added after runs were written, at the value those runs trained with: such a run still resumes.
ADDED_SETTINGS = {"corpus": "medquad"}


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats per token), capped so an untrained model's loss does not overflow."""
    return math.exp(min(loss, 50.0))


def is_preset_dir(path: str | Path) -> bool:
    """A local Keras-Hub preset directory (what ``from_preset`` can load)."""
    return (Path(path).expanduser() / PRESET_CONFIG).is_file()


def is_run_dir(path: str | Path) -> bool:
    """A directory written by ``gpt2chat.modeling.train`` (a preset with the run's files beside it)."""
    return (Path(path).expanduser() / TRAINING_CONFIG).is_file()


def weights_fingerprint(path: str | Path) -> str:
    """A fingerprint of a preset's weights file: its size and 16 samples of 64 KiB spread over it. Retraining
    rewrites every weight, so any sample changes; hashing all of `base`'s 500 MB would add seconds to a cold
    start (sha256 read the 62 MB `small` file in 0.8 s on a loaded 2-core machine). Modification times are not
    used: a Hub download does not keep them."""
    import hashlib

    weights = Path(path).expanduser() / PRESET_WEIGHTS
    size = weights.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    chunk, samples = 1 << 16, 16
    with weights.open("rb") as handle:
        for index in range(samples):
            handle.seek(max(0, (size - chunk) * index // (samples - 1)))
            digest.update(handle.read(chunk))
    return digest.hexdigest()[:32]


def exported_model(path: str | Path) -> Path | None:
    """The OpenVINO export (the directory holding model.xml) of the preset in ``path`` when it exists and was
    made from the weights the preset holds now; None otherwise (no export, or a stale one after retraining)."""
    root = Path(path).expanduser()
    export = root / EXPORT_DIR
    manifest = _read_json(export / EXPORT_MANIFEST)
    if not manifest or not (export / EXPORT_MODEL).is_file() or not (root / PRESET_WEIGHTS).is_file():
        return None
    return export if manifest.get("weights_fingerprint") == weights_fingerprint(root) else None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class RunDirectory:
    """The files of one run. Checkpoints are written to a temporary name and renamed, so a kill never leaves a
    half-written checkpoint behind."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.checkpoints = self.root / CHECKPOINTS
        self.config = self.root / TRAINING_CONFIG
        self.metrics = self.root / METRICS
        self.split = self.root / SPLIT
        self.last_weights = self.checkpoints / "last.weights.h5"
        self.best_weights = self.checkpoints / "best.weights.h5"
        self.state = self.checkpoints / "state.json"
        self.export_dir = self.root / EXPORT_DIR

    # ------------------------------------------------------------------------------------------ reading a run
    def training_config(self) -> dict | None:
        return _read_json(self.config)

    def read_metrics(self) -> dict | None:
        return _read_json(self.metrics)

    def backbone_config(self) -> dict | None:
        preset = _read_json(self.root / PRESET_CONFIG)
        return preset.get("config") if preset else None

    def splits(self, records) -> dict:
        """The run's train/validation/test split of ``records``: its split.json when it has one, else
        ``gpt2chat.corpus.splits.split_records``."""
        from gpt2chat.corpus.splits import load_split, split_records

        return load_split(self.split, records) if self.split.is_file() else split_records(records)

    def model_size(self) -> str | None:
        """The ``model.SIZES`` name of this model: its --size when trained from scratch, else the size whose
        layout matches the backbone config; None for other layouts."""
        from gpt2chat.modeling.model import SIZES

        training = self.training_config()
        if training and not training.get("preset") and training.get("size") in SIZES:
            return training["size"]
        backbone = self.backbone_config() or {}
        for name, layout in SIZES.items():
            if all(backbone.get(k) == v for k, v in dataclasses.asdict(layout).items()):
                return name
        return None

    # ------------------------------------------------------------------------------------------ writing a run
    def prepare(self, settings: dict) -> None:
        """Create the run directory for ``settings`` (a training config as a dict); refuse a different run."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        saved = self.training_config()
        changed = sorted(k for k in settings if saved is not None and k not in RESUMABLE_CHANGES
                         and saved.get(k, ADDED_SETTINGS.get(k)) != settings[k])
        if changed:
            raise ValueError(
                f"{self.root} holds a run with other settings ({', '.join(changed)}); "
                "use another --output or delete that directory"
            )
        self.atomic_write_json(settings, self.config)

    def load_state(self) -> dict | None:
        if self.state.exists() and self.last_weights.exists():
            return _read_json(self.state)
        return None

    @staticmethod
    def atomic_write_weights(model, path: Path) -> None:
        partial = path.with_name(path.name.replace(".weights.h5", ".partial.weights.h5"))
        model.save_weights(partial)
        os.replace(partial, path)

    @staticmethod
    def atomic_write_json(payload, path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(payload, indent=2))
        os.replace(partial, path)
