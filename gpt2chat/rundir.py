"""The layout of a model directory, in one place: what a training run writes and what a served model needs.

    models/default/                 a Keras-Hub preset (``GPT2CausalLM.from_preset`` loads it) ...
        config.json, model.weights.h5, tokenizer.json, preprocessor.json, assets/   (written by save_to_preset)
        training_config.json        ... plus, for a run of ``gpt2chat.train``, its settings,
        metrics.json                the validation history and summary,
        split.json                  the pair ids of each split,
        checkpoints/                and resumable training state (never served or uploaded).

Everything else (the app, deploy, the comparison report) asks this module rather than naming files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

PRESET_CONFIG = "config.json"
TRAINING_CONFIG = "training_config.json"
METRICS = "metrics.json"
SPLIT = "split.json"
CHECKPOINTS = "checkpoints"  # resumable training state: large, and serving never reads it


def is_preset_dir(path: str | Path) -> bool:
    """A local Keras-Hub preset directory (what ``from_preset`` can load)."""
    return (Path(path).expanduser() / PRESET_CONFIG).is_file()


def is_run_dir(path: str | Path) -> bool:
    """A directory written by ``gpt2chat.train`` (a preset with the run's files beside it)."""
    return (Path(path).expanduser() / TRAINING_CONFIG).is_file()


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

    # ------------------------------------------------------------------------------------------ reading a run
    def training_config(self) -> dict | None:
        return _read_json(self.config)

    def read_metrics(self) -> dict | None:
        return _read_json(self.metrics)

    def backbone_config(self) -> dict | None:
        preset = _read_json(self.root / PRESET_CONFIG)
        return preset.get("config") if preset else None

    def model_size(self) -> str | None:
        """The ``model.SIZES`` name of this model: its --size when trained from scratch, else the size whose
        layout matches the backbone config; None for other layouts."""
        from gpt2chat.model import SIZES

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
        if saved is not None and saved != settings:
            changed = sorted(k for k in settings if saved.get(k) != settings[k])
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
