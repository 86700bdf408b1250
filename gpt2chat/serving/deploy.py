"""Bundle the app for a Hugging Face Space, and upload it (and optionally the model) to the Hub.

    python -m gpt2chat.deploy --dry-run --out space_bundle --model-dir models/default   # write the bundle only
    HF_TOKEN=hf_... python -m gpt2chat.deploy --space-id you/gpt2chat --model-dir models/default
    HF_TOKEN=hf_... python -m gpt2chat.deploy --space-id you/gpt2chat --model-dir models/default \\
        --model-repo you/gpt2chat-medquad     # the model goes to its own repo, with a model card
    HF_TOKEN=hf_... python -m gpt2chat.deploy --space-id you/gpt2chat --model-repo you/gpt2chat-medquad

The bundle is what a Gradio Space runs: app.py, the gpt2chat package (sources and resources), requirements.txt,
README.md with the Space's YAML front matter, the retrieval index in ``index/`` (a Space has no MedQuAD XML to
build it from) and, with --model-dir alone, the model in ``model/``. With --model-repo the Space downloads the
model instead: the upload sets the Space variable GPT2CHAT_MODEL to the repo id, which app.py reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from gpt2chat import settings
from gpt2chat.errors import CommandError

PACKAGE_DIR = settings.PACKAGE_DIR
_SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
_NOT_SERVED = ("checkpoints",)  # resumable training state: large, and the app never reads it
BUNDLE_MARKER = ".gpt2chat-bundle.json"  # lists what deploy wrote, so a later run removes exactly that


class DeployError(RuntimeError, CommandError):
    """A problem reported as one line, with exit code 2."""


@dataclasses.dataclass(frozen=True)
class SpaceCard:
    """The Space's YAML front matter (https://huggingface.co/docs/hub/spaces-config-reference)."""

    title: str = "gpt2chat"
    emoji: str = "🩺"
    colorFrom: str = "blue"  # the Hub's thumbnail colours: red, yellow, green, blue, indigo, purple, pink, gray
    colorTo: str = "green"
    sdk: str = "gradio"
    sdk_version: str = dataclasses.field(default_factory=lambda: _installed_version("gradio"))
    python_version: str = "3.11"
    app_file: str = "app.py"
    pinned: bool = False
    license: str = "mit"  # the code's licence, as in the repository README (the model card says MedQuAD's)
    short_description: str = "GPT-2 answers to health questions, citing NIH pages"
    models: tuple[str, ...] = ()

    def metadata(self) -> dict:
        data = dataclasses.asdict(self)
        data["models"] = list(self.models)
        return {key: value for key, value in data.items() if value != []}


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    out: str | None = None  # bundle directory; None = a temporary one (uploads only)
    space_id: str | None = None
    model_dir: str | None = None
    model_repo: str | None = None
    data: str | None = None  # MedQuAD directory for the retrieval index
    index: bool = True
    private: bool = False
    dry_run: bool = False
    export: bool = True  # ship the model's OpenVINO export (made if missing or stale) for fast CPU serving


def _installed_version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def split_front_matter(text: str) -> tuple[dict | None, str]:
    """(metadata, body) of a Markdown file that may start with a ``---`` YAML block."""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return yaml.safe_load(text[4:end]) or {}, text[end + 4:].lstrip("\n")
    return None, text


def with_front_matter(metadata: dict, body: str) -> str:
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def space_readme(readme: str | None, card: SpaceCard) -> str:
    """The repository README as the Space's README. Its front matter is kept, but the keys that must match
    this bundle (SDK and version, app file, linked models) are set from ``card``; no README, the card alone."""
    metadata, body = split_front_matter(readme or "")
    if metadata is None:
        return with_front_matter(card.metadata(), body or f"# {card.title}\n\n{card.short_description}\n")
    required = {key: value for key, value in card.metadata().items()
                if key in ("sdk", "sdk_version", "app_file", "models")}
    return with_front_matter({**metadata, **required}, body)


def model_card(model_dir: Path, repo_id: str) -> str:
    """README.md for the model repo: Hub metadata (licence, data set, tags, metrics from metrics.json) and usage."""
    metrics_file = model_dir / "metrics.json"
    summary = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metadata = {
        "license": "cc-by-4.0",
        "language": ["en"],
        "library_name": "keras-hub",
        "pipeline_tag": "text-generation",
        "datasets": ["lavita/MedQuAD"],  # the Hub copy of MedQuAD (trained from the upstream XML release)
        "tags": ["gpt2", "keras", "keras-hub", "medical", "question-answering", "medquad"],
    }
    facts = []
    if "best_val_perplexity" in summary:
        metadata["model-index"] = [{
            "name": repo_id.split("/")[-1],
            "results": [{
                "task": {"type": "text-generation", "name": "Medical question answering"},
                "dataset": {"type": "medquad", "name": "MedQuAD (validation split by question focus)"},
                "metrics": [
                    {"type": "perplexity", "value": round(summary["best_val_perplexity"], 2),
                     "name": "Validation perplexity"},
                    {"type": "loss", "value": round(summary["best_val_loss"], 4), "name": "Validation loss"},
                ],
            }],
        }]
        facts.append(f"- validation perplexity **{summary['best_val_perplexity']:.1f}** "
                     f"(loss {summary['best_val_loss']:.3f}) at step {summary['best_step']}")
    if "parameters" in summary:
        facts.append(f"- {summary['parameters']:,} parameters; {summary.get('tokens_seen', 0):,} training tokens seen")
    body = f"""# {repo_id.split('/')[-1]}

A GPT-2 causal language model (Keras-Hub preset) trained with gpt2chat on
[MedQuAD](https://github.com/abachaa/MedQuAD) question-answer pairs from NIH websites.

{chr(10).join(facts) or '- no metrics.json was found beside the preset'}

```python
import keras_hub
causal_lm = keras_hub.models.GPT2CausalLM.from_preset("hf://{repo_id}")
```

It is the model behind a demo chatbot. It writes plausible text, not verified medical facts: **not medical
advice**. Answers can be incomplete or wrong; ask a doctor or pharmacist about your own situation.
"""
    return with_front_matter(metadata, body)


def copy_model(model_dir: Path, destination: Path, *, export: bool = True) -> None:
    """The served files of ``model_dir``; with ``export``, its current OpenVINO export too (made here when it is
    missing or was made from other weights), which the app then serves instead of Keras."""
    from gpt2chat.modeling import rundir

    if not (model_dir / "config.json").is_file():
        raise DeployError(f"{model_dir} is not a Keras-Hub preset directory (no config.json); train one first")
    if export and rundir.exported_model(model_dir) is None:
        from gpt2chat.modeling.export import ExportError, export_model

        try:
            export_model(model_dir, quiet=False)
        except ExportError as error:
            raise DeployError(f"cannot export the model for serving: {error} (or pass --no-export)") from error
    skipped = (*_NOT_SERVED, ".*", rundir.EXPORT_DIR + ".partial") + (() if export else (rundir.EXPORT_DIR,))
    shutil.copytree(model_dir, destination, ignore=shutil.ignore_patterns(*skipped))


def _entries(root: Path) -> set[str]:
    """Every file, directory and symlink under ``root`` as a relative path (directories end in "/"); symlinks are
    listed, never followed, so a link to the user's own files can never be mistaken for part of a bundle."""
    entries = set()
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root)
        for name in dirs:
            is_link = (Path(folder) / name).is_symlink()
            entries.add((base / name).as_posix() + ("" if is_link else "/"))
        entries.update((base / name).as_posix() for name in files)
    return entries


def _written_by_deploy(out: Path) -> list[str]:
    """What an earlier run wrote into ``out`` (to be removed before writing anew); [] for a new or empty directory.
    Raises DeployError for anything else: deploy only ever removes what it wrote itself."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DeployError(f"--out {out} is a file or a link, not a directory: choose a new directory")
    if not out.exists():
        return []
    if (out / ".git").exists() or settings.CHECKOUT.is_relative_to(out.resolve()):
        raise DeployError(f"--out {out} holds a repository (it has .git or is this checkout): choose a new directory")
    present = _entries(out)
    if not present:
        return []
    try:
        written = set(json.loads((out / BUNDLE_MARKER).read_text())["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        raise DeployError(f"--out {out} is not empty and was not written by gpt2chat.serving.deploy: "
                          "choose a new or empty directory") from None
    foreign = sorted(present - written - {BUNDLE_MARKER})
    if foreign:
        raise DeployError(f"--out {out} holds {len(foreign)} entries gpt2chat.serving.deploy did not write "
                          f"(e.g. {foreign[0]}): move them or choose another directory")
    return sorted(present & written, reverse=True)  # children before their directories


def write_bundle(config: DeployConfig, out: Path) -> Path:
    """Write everything the Space needs into ``out``. An earlier bundle there is replaced; nothing else is ever
    removed. The bundle is written beside ``out`` first, so a failure leaves ``out`` as it was."""
    earlier = _written_by_deploy(out)
    existing = next(parent for parent in out.absolute().parents if parent.exists())
    if not existing.is_dir():
        raise DeployError(f"cannot create --out {out}: {existing} is a file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as error:
        raise DeployError(f"cannot create --out {out}: {error.strerror or error}") from None
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the bundle is an ordinary directory
        _fill_bundle(config, staging)
        (staging / BUNDLE_MARKER).write_text(json.dumps({"written_by": "gpt2chat.serving.deploy",
                                                         "entries": sorted(_entries(staging))}, indent=1))
        for entry in earlier:
            if entry.endswith("/"):
                (out / entry).rmdir()
            else:
                (out / entry).unlink()
        (out / BUNDLE_MARKER).unlink(missing_ok=True)
        os.replace(staging, out)  # onto a missing or (now) empty directory
    except OSError as error:
        raise DeployError(f"cannot write the bundle to {out}: {error.strerror or error}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _fill_bundle(config: DeployConfig, out: Path) -> None:
    if not (settings.CHECKOUT / "app.py").is_file():
        raise DeployError(f"no app.py in {settings.CHECKOUT}: deploy from a clone of the repository "
                          "(pip install -e . there), not from an installed copy of the package")
    shutil.copy2(settings.CHECKOUT / "app.py", out / "app.py")
    shutil.copy2(settings.CHECKOUT / "requirements.txt", out / "requirements.txt")
    shutil.copytree(PACKAGE_DIR, out / "gpt2chat", ignore=_SKIPPED)
    readme = settings.CHECKOUT / "README.md"
    card = SpaceCard(models=(config.model_repo,) if config.model_repo else ())
    (out / "README.md").write_text(space_readme(readme.read_text() if readme.is_file() else None, card))
    if config.model_dir and not config.model_repo:
        copy_model(Path(config.model_dir), out / "model", export=config.export)
    if config.index:
        from gpt2chat.search.retrieval import RetrievalIndex

        try:
            RetrievalIndex.load_or_build(config.data).save(out / "index")
        except FileNotFoundError as error:
            raise DeployError(f"cannot build the retrieval index: {error} (pass --data, or --no-index)") from error


def hub_unreachable(endpoint: str, timeout: float = 5.0) -> str | None:
    """Why the Hub cannot be reached, or None. Any HTTP answer, even an error status, means it is reachable."""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))
    return None


# Each repo is made to hold exactly what is uploaded (its .gitattributes excepted). A file left by an earlier deploy
# is read or downloaded by the Space: the index/ of an older format after a deploy with --no-index stops app.py; the
# OpenVINO export of earlier weights after one with --no-export is downloaded on every start for nothing (its
# fingerprint no longer matches, so it is not served).
_REPLACE_EVERYTHING = ["*"]


def upload(config: DeployConfig, bundle: Path, token: str) -> str:
    """Create or update the repos and upload, replacing what they held; returns the Space's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    if config.model_repo and config.model_dir:
        model_dir = Path(config.model_dir)
        with tempfile.TemporaryDirectory() as staging:
            copy_model(model_dir, Path(staging) / "model", export=config.export)
            (Path(staging) / "model" / "README.md").write_text(model_card(model_dir, config.model_repo))
            api.create_repo(config.model_repo, repo_type="model", private=config.private, exist_ok=True)
            api.upload_folder(repo_id=config.model_repo, repo_type="model", folder_path=Path(staging) / "model",
                              delete_patterns=_REPLACE_EVERYTHING, commit_message="Upload gpt2chat model")
        print(f"model uploaded: https://huggingface.co/{config.model_repo}", flush=True)
    api.create_repo(config.space_id, repo_type="space", space_sdk="gradio", private=config.private, exist_ok=True)
    if config.model_repo:
        api.add_space_variable(config.space_id, settings.MODEL_ENV, config.model_repo,
                               description="Hub model repo the app serves")
    api.upload_folder(repo_id=config.space_id, repo_type="space", folder_path=bundle, ignore_patterns=[BUNDLE_MARKER],
                      delete_patterns=_REPLACE_EVERYTHING, commit_message="Deploy gpt2chat")
    return f"https://huggingface.co/spaces/{config.space_id}"


def _upload_errors() -> tuple[type[BaseException], ...]:
    """What a failed upload raises: Hub HTTP errors are OSErrors, the HTTP client's own errors are not."""
    import httpx2

    return OSError, ValueError, httpx2.HTTPError


def deploy(config: DeployConfig) -> str:
    """Write the bundle (dry run) or check access, bundle and upload; returns a line for the user."""
    if config.dry_run:
        out = write_bundle(config, Path(config.out or "space_bundle"))
        note = f"; the Space would set {settings.MODEL_ENV}={config.model_repo}" if config.model_repo else ""
        return f"bundle written to {out}{note}"
    if not config.space_id:
        raise DeployError("--space-id is required to upload (or pass --dry-run)")
    token = settings.hf_token()
    if not token:
        raise DeployError("HF_TOKEN is not set: create a token with write access at "
                          "https://huggingface.co/settings/tokens and export HF_TOKEN")
    from huggingface_hub import constants

    problem = hub_unreachable(constants.ENDPOINT)
    if problem:
        raise DeployError(f"cannot reach {constants.ENDPOINT} ({problem}): check the network, or write the "
                          "bundle with --dry-run")
    with tempfile.TemporaryDirectory() as scratch:
        bundle = write_bundle(config, Path(config.out) if config.out else Path(scratch) / "bundle")
        try:
            return f"Space deployed: {upload(config, bundle, token)}"
        except _upload_errors() as error:
            raise DeployError(f"upload failed ({type(error).__name__}): {error}") from error


def parse_args(argv: list[str] | None = None) -> DeployConfig:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="write the bundle, upload nothing")
    parser.add_argument("--out", help="bundle directory (default: space_bundle with --dry-run, else temporary)")
    parser.add_argument("--space-id", help="the Space, as owner/name (needed to upload; the upload replaces the "
                                           "files it held)")
    parser.add_argument("--model-dir", help="trained preset directory: shipped in the bundle's model/, or "
                                            "uploaded to --model-repo")
    parser.add_argument("--model-repo", help="Hub model repo (owner/name) the Space downloads the model from")
    parser.add_argument("--data", help="MedQuAD directory for the retrieval index (default: settings)")
    parser.add_argument("--no-index", dest="index", action="store_false",
                        help="leave the retrieval index out (the app then builds it from MedQuAD)")
    parser.add_argument("--private", action="store_true", help="create private repos")
    parser.add_argument("--no-export", dest="export", action="store_false",
                        help="ship the Keras-Hub preset only, without its OpenVINO export (slower serving)")
    args = parser.parse_args(argv)
    return DeployConfig(out=args.out, space_id=args.space_id, model_dir=args.model_dir, model_repo=args.model_repo,
                        data=args.data, index=args.index, private=args.private, dry_run=args.dry_run,
                        export=args.export)


def main(argv: list[str] | None = None) -> int:
    print(deploy(parse_args(argv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
