"""Serve gpt2chat in the browser and over the API: the Hugging Face Space entry point, also run locally.

    python app.py                                   # models/default, trained first when missing (~15 min)
    python app.py --model models/my-run             # a local Keras-Hub preset directory
    python app.py --model you/gpt2chat-medquad      # a Hub model repo, downloaded once (needs network)

The model comes from --model, else $GPT2CHAT_MODEL, else the bundle's ``model/`` directory (what
``python -m gpt2chat.deploy --model-dir`` ships), else ``models/default``. The retrieval index comes from the
bundle's ``index/`` directory when present (a Space has no MedQuAD XML), else it is built from MedQuAD.
Only the standard library is imported here, so ``import app`` starts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time
from pathlib import Path

from gpt2chat import settings  # paths only: no TensorFlow, no Gradio

HERE = Path(__file__).resolve().parent
BUNDLED_MODEL = HERE / "model"
BUNDLED_INDEX = HERE / "index"
_HUB_REPO_ID = re.compile(r"^(hf://)?[A-Za-z0-9][\w.-]*/[\w.-]+$")
TRAINING_NOTICE = "No trained model found: training the quick-start model (about 15 minutes on 2 CPU cores)…"


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    # Generation is CPU-bound on shared cores: more answers at once only slow every stream down. Two lets a
    # second answer start (its prompt is short work) while another streams; the rest wait in the queue.
    concurrency: int = 2
    # Room for every waiting user (the brief is 20 at once, plus API clients) instead of a "queue full" error.
    queue_size: int = 64


def parse_args(argv: list[str] | None = None, env: dict = os.environ) -> ServeConfig:
    parser = argparse.ArgumentParser(prog="python app.py", description="Serve the gpt2chat medical chatbot.")
    parser.add_argument("--model", help=f"preset directory or Hub repo id (default: ${settings.MODEL_ENV}, model/, "
                                        "models/default)")
    parser.add_argument("--host", default=env.get("GRADIO_SERVER_NAME", ServeConfig.host),
                        help="interface to listen on (default: $GRADIO_SERVER_NAME or %(default)s)")
    parser.add_argument("--port", type=int, default=int(env.get("GRADIO_SERVER_PORT", ServeConfig.port)),
                        help="port (default: $GRADIO_SERVER_PORT or %(default)s)")
    args = parser.parse_args(argv)
    return ServeConfig(model=args.model, host=args.host, port=args.port)


def model_source(explicit: str | None = None, env: dict = os.environ) -> str:
    """Where the model comes from, before any download or training."""
    if explicit:
        return explicit
    if env.get(settings.MODEL_ENV):
        return env[settings.MODEL_ENV]
    if (BUNDLED_MODEL / "config.json").is_file():
        return str(BUNDLED_MODEL)
    return str(settings.DEFAULT_MODEL_DIR)


def is_hub_repo_id(source: str) -> bool:
    """``owner/name`` (or ``hf://owner/name``) that is not a local path: like transformers, local wins."""
    return bool(_HUB_REPO_ID.match(source)) and not Path(source).expanduser().exists()


def prepare_model(source: str) -> str:
    """A loadable preset: download a Hub repo, train the default model when it is missing, else pass through."""
    if is_hub_repo_id(source):
        from huggingface_hub import snapshot_download

        repo_id = source.removeprefix("hf://")
        print(f"Downloading the model from the Hugging Face Hub: {repo_id}", flush=True)
        # Resumable training state is not needed to serve.
        return snapshot_download(repo_id, ignore_patterns=["checkpoints/*"])
    default = settings.DEFAULT_MODEL_DIR
    if Path(source).expanduser().resolve() == default.resolve() and not (default / "config.json").is_file():
        from gpt2chat.train import TrainConfig, train

        print(TRAINING_NOTICE, flush=True)
        train(TrainConfig.from_recipe("quickstart", output=str(default)))
    return source


def load_engine(model: str):
    from gpt2chat.engine import ChatEngine, EngineConfig

    config = EngineConfig(model=model)
    if not (BUNDLED_INDEX / "manifest.json").is_file():
        return ChatEngine.load(config)
    # A Space has no MedQuAD XML to build the index from: serve the one the bundle carries.
    from gpt2chat.masking import get_masker
    from gpt2chat.model import load_preset
    from gpt2chat.retrieval import RetrievalIndex

    get_masker()
    return ChatEngine(load_preset(model), RetrievalIndex.load(BUNDLED_INDEX), config)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP poll otherwise
    started = time.perf_counter()
    from gpt2chat.model import ModelUnavailable

    try:
        model = prepare_model(model_source(config.model))
        print(f"Loading {model}", flush=True)
        engine = load_engine(model)
    except (ModelUnavailable, OSError, ValueError) as error:  # OSError: missing files, Hub and network errors
        print(f"error: {error}", file=sys.stderr)
        return 2
    engine.warm_up()
    print(f"Model ready in {time.perf_counter() - started:.0f} s", flush=True)

    from gpt2chat.ui import build_app, launch_options

    demo = build_app(engine)
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    demo.launch(server_name=config.host, server_port=config.port, show_error=True, **launch_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
