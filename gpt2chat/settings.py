"""Where things live: data, caches, the default model. Every path is overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent

# MedQuAD sits beside the checkout (../shared/medquad) in this project's machines and CI;
# users elsewhere point GPT2CHAT_MEDQUAD (or --data) at their own clone of the upstream repository.
MEDQUAD_ENV = "GPT2CHAT_MEDQUAD"
_MEDQUAD_CANDIDATES = (REPO_ROOT.parent / "shared" / "medquad", REPO_ROOT / "data" / "MedQuAD")

CACHE_ENV = "GPT2CHAT_CACHE"
MODEL_ENV = "GPT2CHAT_MODEL"

# The README's quick start trains here and the app serves from here when no model is given.
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"
ONLINE_PRESET = "gpt2_base_en"


def medquad_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The MedQuAD XML tree: the explicit path, else $GPT2CHAT_MEDQUAD, else the first known location that exists."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(MEDQUAD_ENV):
        return Path(os.environ[MEDQUAD_ENV]).expanduser()
    for candidate in _MEDQUAD_CANDIDATES:
        if candidate.is_dir():
            return candidate
    return _MEDQUAD_CANDIDATES[0]


def cache_dir() -> Path:
    """Generated caches (token arrays, retrieval index); safe to delete."""
    path = Path(os.environ.get(CACHE_ENV, REPO_ROOT / ".cache")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_model() -> str:
    """The model the app serves when none is given: $GPT2CHAT_MODEL, else the quick-start model directory."""
    return os.environ.get(MODEL_ENV) or str(DEFAULT_MODEL_DIR)
