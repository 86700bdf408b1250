"""Serve gpt2chat in the browser and over the API: the Hugging Face Space entry point, also run locally.

    python app.py                                   # models/default; trained in the background when missing
    python app.py --model models/my-run             # a local Keras-Hub preset directory
    python app.py --model you/gpt2chat-medquad      # a Hub model repo, downloaded once (needs network)
    python app.py --no-model                        # summaries of the NIH pages only: nothing loaded or trained

The model comes from --model, else $GPT2CHAT_MODEL, else the bundle's ``model/`` directory (what
``python -m gpt2chat.deploy --model-dir`` ships), else ``models/default``. When ``models/default`` is missing,
the app serves at once (answers are summaries of the NIH pages) while the quick-start model trains in a
background process; the page shows the training progress, and the engine switches to the model once it is
saved and has passed its quality gate, without a restart. The retrieval index comes from the bundle's
``index/`` directory when present (a Space has no MedQuAD XML), else it is built from MedQuAD. Only the standard
library is imported here, so ``import app`` starts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from gpt2chat import settings  # paths only: no TensorFlow, no Gradio
from gpt2chat.modeling.rundir import is_preset_dir

HERE = Path(__file__).resolve().parent
BUNDLED_MODEL = HERE / "model"
BUNDLED_INDEX = HERE / "index"
_HUB_REPO_ID = re.compile(r"^(hf://)?[A-Za-z0-9][\w.-]*/[\w.-]+$")
TRAINING_NOTICE = ("No trained model found: training the quick-start model in the background (about 15 minutes "
                   "on 2 CPU cores); until then answers are summaries of the NIH pages.")
NO_MODEL_NOTICE = "Serving summaries of the NIH pages (--no-model): no model is loaded or trained."
log = logging.getLogger("gpt2chat.app")


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
    no_model: bool = False  # NIH summaries only: no model is loaded or trained


def parse_args(argv: list[str] | None = None, env: dict = os.environ) -> ServeConfig:
    parser = argparse.ArgumentParser(prog="python app.py", description="Serve the gpt2chat medical chatbot.")
    parser.add_argument("--model", help=f"preset directory or Hub repo id (default: ${settings.MODEL_ENV}, model/, "
                                        "models/default)")
    parser.add_argument("--host", default=env.get("GRADIO_SERVER_NAME", ServeConfig.host),
                        help="interface to listen on (default: $GRADIO_SERVER_NAME or %(default)s)")
    parser.add_argument("--port", type=int, default=int(env.get("GRADIO_SERVER_PORT", ServeConfig.port)),
                        help="port (default: $GRADIO_SERVER_PORT or %(default)s)")
    parser.add_argument("--no-model", action="store_true",
                        help="answer with summaries of the NIH pages only: no model is loaded or trained")
    args = parser.parse_args(argv)
    if args.no_model and args.model:
        parser.error("--no-model and --model exclude each other")
    return ServeConfig(model=args.model, host=args.host, port=args.port, no_model=args.no_model)


def model_source(explicit: str | None = None, env: dict = os.environ) -> str:
    """Where the model comes from, before any download or training: ``--model``, else ``settings.default_model``
    with this bundle's ``model/`` when it holds one."""
    return explicit or settings.default_model(BUNDLED_MODEL if is_preset_dir(BUNDLED_MODEL) else None, env)


def is_hub_repo_id(source: str) -> bool:
    """``owner/name`` (or ``hf://owner/name``) that is not a local path: like transformers, local wins."""
    return bool(_HUB_REPO_ID.match(source)) and not Path(source).expanduser().exists()


def prepare_model(source: str) -> str:
    """A loadable preset: a Hub repo is downloaded; anything else passes through."""
    if is_hub_repo_id(source):
        from huggingface_hub import snapshot_download

        repo_id = source.removeprefix("hf://")
        print(f"Downloading the model from the Hugging Face Hub: {repo_id}", flush=True)
        return snapshot_download(repo_id, ignore_patterns=["checkpoints/*"])  # training state is not served
    return source


def needs_training(source: str) -> bool:
    """The default model is missing: the app trains it in the background (other missing models are errors)."""
    default = settings.DEFAULT_MODEL_DIR
    return Path(source).expanduser().resolve() == default.resolve() and not is_preset_dir(default)


class BackgroundTraining:
    """``python -m gpt2chat.train`` in a child process; when its preset is saved, the engine swaps it in."""

    def __init__(self, engine, output: Path, recipe: str = "quickstart", data: str | None = None):
        from gpt2chat.modeling.training_config import TrainConfig

        self.engine, self.output = engine, output
        self.steps = TrainConfig.from_recipe(recipe).steps
        output.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "gpt2chat.train", "--recipe", recipe, "--output", str(output)]
        with open(output / "train.log", "a") as log:  # training output only: no user data reaches it
            self.process = subprocess.Popen(command + (["--data", data] if data else []), stdout=log,
                                            stderr=subprocess.STDOUT, cwd=HERE, preexec_fn=_default_sigint)
        self.failed: str | None = None
        self.swapped = threading.Event()  # set once the trained model is in the engine (or training failed)
        threading.Thread(target=self._swap_when_saved, name="model-swap", daemon=True).start()

    def _swap_when_saved(self) -> None:
        from gpt2chat.modeling.export import export_and_load
        from gpt2chat.modeling.model import ModelUnavailable, load_preset

        code = self.process.wait()
        try:
            if code != 0 or not is_preset_dir(self.output):
                self.failed = f"training stopped with exit code {code}; see {self.output / 'train.log'}"
                log.error("background %s", self.failed)
                return
            try:
                causal_lm = load_preset(self.output)
            except ModelUnavailable as error:
                self.failed = str(error)
                return
            config = self.engine.config  # the trained model is served from its export when that works
            generator = export_and_load(self.output, causal_lm, config.context_length) if config.use_export else None
            status = self.engine.use_model(causal_lm, generator)
            log.info("trained model loaded: %s", status.detail)
        finally:
            self.swapped.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop training with the app (Ctrl-C, SIGTERM): the next start resumes it from its last checkpoint, where an
        orphaned trainer would go on using both cores and race a restarted app's second trainer for the same files."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # train.py saves nothing half-written and logs how to resume
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def progress(self) -> str:
        """One line for the page: where training is, or what the model's quality gate decided."""
        from gpt2chat.modeling.rundir import RunDirectory

        if self.failed:
            return f"⚠️ Model training failed ({self.failed}). Answers are summaries of the NIH pages."
        if self.process.poll() is None:
            state = RunDirectory(self.output).load_state() or {}
            history = state.get("history") or []
            done = history[-1]["step"] if history else 0
            loss = f", validation loss {history[-1]['val_loss']:.2f}" if history else ""
            return (f"⏳ Training the quick-start model in the background: step {done} of {self.steps}{loss}. "
                    "Until it is ready, answers are summaries of the NIH pages.")
        return f"ℹ️ {self.engine.status.detail}"


def _default_sigint() -> None:
    # An app started as a background job ('python app.py &', nohup) ignores SIGINT and its children inherit that:
    # the trainer would then ignore stop()'s SIGINT, train on, and be killed 30 s later.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP poll otherwise
    started = time.perf_counter()
    from gpt2chat.serving.server import PortUnavailable, check_port

    try:
        check_port(config.host, config.port)  # in a second, not after a minute of loading
    except PortUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from gpt2chat.chat.engine import ChatEngine, EngineConfig
    from gpt2chat.modeling.model import ModelUnavailable
    from gpt2chat.search.encoder import EncoderUnavailable

    try:
        source = model_source(config.model)
        train_first = needs_training(source) and not config.no_model
        model = None if train_first or config.no_model else prepare_model(source)
        print(TRAINING_NOTICE if train_first else f"Loading {model}" if model else NO_MODEL_NOTICE, flush=True)
        index_dir = str(BUNDLED_INDEX) if (BUNDLED_INDEX / "manifest.json").is_file() else None
        engine = ChatEngine.build(EngineConfig(model=model, index_dir=index_dir))
    # OSError: missing files, Hub and network errors
    except (ModelUnavailable, EncoderUnavailable, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    engine.warm_up()
    training = BackgroundTraining(engine, settings.DEFAULT_MODEL_DIR) if train_first else None
    if not train_first:
        engine.gate()
    print(f"Model ready in {time.perf_counter() - started:.0f} s ({engine.status.detail})", flush=True)

    from gpt2chat.serving.fairness import AnswerScheduler
    from gpt2chat.serving.feedback import open_app_store
    from gpt2chat.serving.server import serve
    from gpt2chat.serving.ui import build_app, launch_options

    # Ratings on by default ($GPT2CHAT_FEEDBACK=0 turns them off), masked by the engine's own masker. The chat,
    # /chat and /ask share the answer slots, handed out fairly between clients.
    demo = build_app(engine, status=training.progress if training else None,
                     feedback=open_app_store(engine.masker, settings.feedback_settings()),
                     scheduler=AnswerScheduler(slots=config.concurrency))
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    # uvicorn re-raises the SIGTERM it shut down on once it has finished; as an exception (not the default handler,
    # which ends the process on the spot) it lets the training child be stopped below.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve(demo, config.host, config.port, launch_options=launch_options())
    finally:
        if training:
            training.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
