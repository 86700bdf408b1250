"""Where things live, and the one place that reads gpt2chat's environment variables.

What gpt2chat writes (models, runs, caches, reports, the ratings database) goes under the home directory:
``$GPT2CHAT_HOME``, else the working directory (a checkout, when run from one), never the install location, which
may be a read-only site-packages. What it ships (``resources/``, ``modeling/recipes/``) is read from the package.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent  # shipped, read-only files: resources/, modeling/recipes/
# The source checkout, when the package runs from one (an editable install or a clone): deploy copies app.py,
# README.md and requirements.txt from it into a Space bundle.
CHECKOUT = PACKAGE_DIR.parent

HOME_ENV = "GPT2CHAT_HOME"
MEDQUAD_ENV = "GPT2CHAT_MEDQUAD"
CONSUMER_QA_ENV = "GPT2CHAT_CONSUMER_QA"
CACHE_ENV = "GPT2CHAT_CACHE"
MODEL_ENV = "GPT2CHAT_MODEL"
ONLINE_PRESET = "gpt2_base_en"

# Read once, when gpt2chat is first imported. Absolute: a run directory records its output path, and a resumed run
# must name the same one (runs trained before this default recorded <checkout>/models/default).
HOME = Path(os.environ.get(HOME_ENV) or os.getcwd()).expanduser().resolve()
DEFAULT_MODEL_DIR = HOME / "models" / "default"  # the quick start trains here; the app serves it by default
LIVRABLES_DIR = HOME / "livrables"  # generated reports
RUNS_DIR = HOME / "runs"  # training runs other than the default model (sweeps)
FEEDBACK_DB = HOME / "data" / "feedback" / "feedback.sqlite3"  # users' masked ratings (git-ignored)


def _shared(name: str) -> Path:
    # This project's machines and CI keep the data sets beside the checkout (../shared/<name>).
    return HOME.parent / "shared" / name


def medquad_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The MedQuAD XML tree: the explicit path, else $GPT2CHAT_MEDQUAD, else the first known location that exists
    (../shared/medquad, data/MedQuAD)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(MEDQUAD_ENV):
        return Path(os.environ[MEDQUAD_ENV]).expanduser()
    candidates = (_shared("medquad"), HOME / "data" / "MedQuAD")
    return next((candidate for candidate in candidates if candidate.is_dir()), candidates[0])


def consumer_qa_dir() -> Path:
    """MEDIQA 2019 data (evaluation only): $GPT2CHAT_CONSUMER_QA, else ../shared/consumer_qa."""
    return Path(os.environ.get(CONSUMER_QA_ENV) or _shared("consumer_qa")).expanduser()


def cache_dir() -> Path:
    """Generated caches (token arrays, retrieval index); safe to delete."""
    path = Path(os.environ.get(CACHE_ENV) or HOME / ".cache").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_model() -> str:
    """The model served when none is given: $GPT2CHAT_MODEL, else the quick-start model directory."""
    return os.environ.get(MODEL_ENV) or str(DEFAULT_MODEL_DIR)
