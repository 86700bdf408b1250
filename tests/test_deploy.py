"""The Space bundle, the uploader's failure modes, app.py's model choice, and the app booted from a bundle."""

from __future__ import annotations

import json
import time
from pathlib import Path

import gradio
import pytest

import app
from gpt2chat import settings
from gpt2chat.cli import run
from gpt2chat.serving import deploy
from gpt2chat.serving.ui import REPLY_DISCLAIMER
from tests.test_ui import MARKDOWN_LINK, serve_app

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


# --- Space metadata and model card --------------------------------------------------------------------------------


def test_generated_front_matter_matches_the_installed_gradio():
    metadata, body = deploy.split_front_matter(deploy.space_readme(None, deploy.SpaceCard()))
    assert metadata["sdk"] == "gradio" and metadata["sdk_version"] == gradio.__version__
    assert metadata["app_file"] == "app.py" and "models" not in metadata
    assert len(metadata["short_description"]) <= 60  # the Hub's limit
    assert body.startswith("# gpt2chat")


def test_repository_front_matter_is_kept_with_the_bundle_keys_enforced():
    readme = "---\ntitle: My chatbot\nemoji: 💊\nsdk: gradio\nsdk_version: 4.0.0\n---\n# Hello\n\nBody.\n"
    metadata, body = deploy.split_front_matter(deploy.space_readme(readme, deploy.SpaceCard(models=("me/m",))))
    assert metadata["title"] == "My chatbot" and metadata["emoji"] == "💊"
    assert metadata["sdk_version"] == gradio.__version__ and metadata["models"] == ["me/m"]
    assert body == "# Hello\n\nBody.\n"


def test_model_card_carries_metrics_from_the_run(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"best_val_perplexity": 31.234, "best_val_loss": 3.4414, "best_step": 400, "parameters": 1234567,
         "tokens_seen": 819200}))
    metadata, body = deploy.split_front_matter(deploy.model_card(tmp_path, "me/gpt2chat-medquad"))
    assert metadata["license"] and metadata["datasets"] and "medical" in metadata["tags"]
    metrics = metadata["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {"perplexity": 31.23, "loss": 3.4414}
    assert 'from_preset("hf://me/gpt2chat-medquad")' in body and "not medical" in body


# --- the bundle ---------------------------------------------------------------------------------------------------


def test_bundle_holds_what_the_space_needs_and_nothing_else(tiny_run, tmp_path):
    import shutil

    from gpt2chat.modeling import rundir

    preset = tmp_path / "model"  # a copy: the export deploy makes beside it must not change other tests' model
    shutil.copytree(tiny_run[0], preset, ignore=shutil.ignore_patterns(rundir.CHECKPOINTS, rundir.EXPORT_DIR + "*"))
    out = tmp_path / "bundle"
    assert run("deploy", ["--dry-run", "--out", str(out), "--model-dir", str(preset), "--no-index"]) == 0
    assert {p.name for p in out.iterdir()} == {"app.py", "gpt2chat", "requirements.txt", "README.md", "model",
                                               deploy.BUNDLE_MARKER}
    assert (out / "gpt2chat" / "serving" / "ui.py").is_file() and (out / "gpt2chat" / "resources").is_dir()
    assert not list(out.rglob("__pycache__")) and not list(out.rglob("*.pyc"))
    assert (out / "model" / "config.json").is_file() and not (out / "model" / "checkpoints").exists()
    assert rundir.exported_model(out / "model") == out / "model" / rundir.EXPORT_DIR  # the export ships, current
    assert deploy.split_front_matter((out / "README.md").read_text())[0]["app_file"] == "app.py"
    # Running it again replaces the earlier bundle; anything else is never deleted.
    assert run("deploy", ["--dry-run", "--out", str(out), "--no-index"]) == 0
    assert not (out / "model").exists()
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    assert run("deploy", ["--dry-run", "--out", str(tmp_path / "precious"), "--no-index"]) == 2
    assert (tmp_path / "precious" / "notes.txt").is_file()


def _user_checkout(root):
    """What the old deploy deleted: a directory holding app.py and gpt2chat/, with the user's own files."""
    (root / "gpt2chat").mkdir(parents=True)
    (root / "app.py").write_text("print('mine')")
    (root / "notes.txt").write_text("keep me")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("with_git", [False, True])
def test_dry_run_never_deletes_a_directory_it_did_not_write(tmp_path, capsys, with_git):
    checkout = tmp_path / "checkout"
    before = _user_checkout(checkout)
    if with_git:
        (checkout / ".git").mkdir()
        (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        before = sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*"))
    assert run("deploy", ["--dry-run", "--out", str(checkout), "--no-index"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("not written by gpt2chat.serving.deploy" in err or ".git" in err), err
    assert sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*")) == before
    assert (checkout / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["checkout"]  # no staging directory left behind


def test_a_bundle_with_the_users_files_added_is_not_replaced(tmp_path, capsys):
    out = tmp_path / "bundle"
    assert run("deploy", ["--dry-run", "--out", str(out), "--no-index"]) == 0
    (out / "gpt2chat" / "my_patch.py").write_text("# mine")
    assert run("deploy", ["--dry-run", "--out", str(out), "--no-index"]) == 2
    assert "did not write" in capsys.readouterr().err and (out / "gpt2chat" / "my_patch.py").is_file()
    (out / "gpt2chat" / "my_patch.py").unlink()
    (out / "README.md").write_text("stale")  # a file deploy wrote: replaced
    assert run("deploy", ["--dry-run", "--out", str(out), "--no-index"]) == 0
    assert (out / "README.md").read_text() != "stale"


def test_a_failed_bundle_leaves_the_earlier_one_untouched(tmp_path, capsys):
    out = tmp_path / "bundle"
    assert run("deploy", ["--dry-run", "--out", str(out), "--no-index"]) == 0
    (out / "README.md").write_text("the earlier bundle")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert run("deploy", ["--dry-run", "--out", str(out), "--no-index", "--model-dir", str(tmp_path / "nope")]) == 2
    assert "not a Keras-Hub preset directory" in capsys.readouterr().err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert (out / "README.md").read_text() == "the earlier bundle"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


@pytest.mark.parametrize("target", ["a_file", "a_file/bundle", "link"])
def test_out_that_is_a_file_or_under_one_is_a_one_line_error(tmp_path, capsys, target):
    (tmp_path / "a_file").write_text("data")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    assert run("deploy", ["--dry-run", "--out", str(tmp_path / target), "--no-index"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert (tmp_path / "a_file").read_text() == "data" and not any((tmp_path / "elsewhere").iterdir())


def test_model_repo_is_linked_instead_of_copied(tiny_run, tmp_path, capsys):
    preset, _ = tiny_run
    out = tmp_path / "bundle"
    code = run("deploy", ["--dry-run", "--out", str(out), "--no-index", "--model-dir", str(preset),
                        "--model-repo", "me/gpt2chat-medquad"])
    assert code == 0 and not (out / "model").exists()
    assert deploy.split_front_matter((out / "README.md").read_text())[0]["models"] == ["me/gpt2chat-medquad"]
    assert "GPT2CHAT_MODEL=me/gpt2chat-medquad" in capsys.readouterr().out


# --- uploading without token or network fails fast, in one line --------------------------------------------------


def test_upload_without_token_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert run("deploy", ["--space-id", "me/gpt2chat", "--no-index"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_TOKEN" in err


def test_upload_without_network_fails_fast(monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    started = time.perf_counter()
    assert run("deploy", ["--space-id", "me/gpt2chat", "--no-index"]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - started < 60  # one 5 s reachability check (hub_unreachable), no upload attempts
    assert err.count("\n") == 1 and "cannot reach" in err and UNREACHABLE in err


def test_hub_errors_during_upload_become_one_line(monkeypatch, tmp_path, capsys):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(deploy, "hub_unreachable", lambda endpoint: None)  # reachable, then the request fails
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    assert run("deploy", ["--space-id", "me/gpt2chat", "--no-index", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: upload failed")


class _RecordingHub:
    """An HfApi stand-in holding each repo's files in memory; ``upload_folder`` applies huggingface_hub's own deletion
    planning (``_prepare_folder_deletions``) and pattern filter to them instead of making a commit."""

    def __init__(self, token=None, repos=None):
        self.repos = repos if repos is not None else {}

    def create_repo(self, repo_id, **kwargs):
        self.repos.setdefault(repo_id, {".gitattributes"})

    def add_space_variable(self, *args, **kwargs):
        pass

    def list_repo_files(self, repo_id, **kwargs):
        return sorted(self.repos[repo_id])

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, ignore_patterns=None, delete_patterns=None,
                      commit_message=None):
        from huggingface_hub.hf_api import HfApi  # the real class: the test replaces huggingface_hub.HfApi
        from huggingface_hub.utils import filter_repo_objects

        deleted = {op.path_in_repo for op in HfApi._prepare_folder_deletions(
            self, repo_id=repo_id, repo_type=repo_type, revision=None, path_in_repo="",
            delete_patterns=delete_patterns)}
        files = [str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()]
        added = set(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        self.repos[repo_id] = (self.repos[repo_id] - deleted) | added


def test_a_deploy_replaces_what_an_earlier_deploy_left(tiny_run, tmp_path, monkeypatch, capsys):
    """An older index/ left on the Space would be loaded by app.py after a deploy with --no-index; an earlier
    OpenVINO export left in the model repo would be downloaded by every start after one with --no-export."""
    import huggingface_hub

    preset, _ = tiny_run
    repos = {"me/gpt2chat": {".gitattributes", "app.py", "index/manifest.json", "index/passages.jsonl"},
             "me/gpt2chat-medquad": {".gitattributes", "config.json", "openvino/openvino_model.xml"}}
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: _RecordingHub(token, repos))
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(deploy, "hub_unreachable", lambda endpoint: None)
    assert run("deploy", ["--space-id", "me/gpt2chat", "--no-index", "--model-dir", str(preset), "--model-repo",
                          "me/gpt2chat-medquad", "--no-export", "--out", str(tmp_path / "bundle")]) == 0
    space, model = repos["me/gpt2chat"], repos["me/gpt2chat-medquad"]
    assert {".gitattributes", "app.py", "README.md", "requirements.txt", "gpt2chat/settings.py"} <= space
    assert not any(name.startswith("index/") for name in space)
    assert {".gitattributes", "config.json", "README.md"} <= model and not any("openvino" in n for n in model)


# --- app.py -------------------------------------------------------------------------------------------------------


def test_app_model_choice_order(tmp_path, monkeypatch):
    assert app.model_source("explicit", env={"GPT2CHAT_MODEL": "env"}) == "explicit"
    assert app.model_source(None, env={"GPT2CHAT_MODEL": "env"}) == "env"
    monkeypatch.setattr(app, "BUNDLED_MODEL", tmp_path)
    assert app.model_source(None, env={}) == str(settings.DEFAULT_MODEL_DIR)
    (tmp_path / "config.json").write_text("{}")
    assert app.model_source(None, env={}) == str(tmp_path)
    assert app.model_source(None, env={"GPT2CHAT_MODEL": "env"}) == "env"  # the environment before the bundle
    # The one resolution the engine's default uses too (EngineConfig.model), without a bundle.
    assert settings.default_model(env={"GPT2CHAT_MODEL": "env"}) == "env"
    assert settings.default_model(env={}) == str(settings.DEFAULT_MODEL_DIR)


def test_app_recognises_hub_repo_ids(tmp_path, monkeypatch):
    assert app.is_hub_repo_id("me/gpt2chat-medquad") and app.is_hub_repo_id("hf://me/gpt2chat-medquad")
    assert not app.is_hub_repo_id("gpt2_base_en") and not app.is_hub_repo_id("/abs/path")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "mine").mkdir(parents=True)
    assert not app.is_hub_repo_id("models/mine")  # a local directory wins


def test_app_arguments_default_to_the_gradio_environment():
    config = app.parse_args([], env={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"})
    assert (config.host, config.port, config.model) == ("0.0.0.0", 7861, None)
    assert app.parse_args(["--port", "9000", "--model", "m"], env={}).port == 9000
    assert app.ServeConfig().queue_size >= 20


def test_app_help_starts_nothing(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.parse_args(["--help"])
    assert exit_info.value.code == 0 and "--model" in capsys.readouterr().out


def test_app_boots_from_the_dry_run_bundle(tiny_run, medquad_dir, full_index_cache, sample_records, tmp_path):
    """What a Space does: the bundle's app.py, its model/ and its index/, then one question over the API."""
    from gradio_client import Client

    preset, _ = tiny_run
    bundle = tmp_path / "bundle"
    assert run("deploy", ["--dry-run", "--out", str(bundle), "--model-dir", str(preset), "--no-export"]) == 0
    assert (bundle / "index" / "manifest.json").is_file()
    # No $GPT2CHAT_MODEL (an empty value counts as unset, and overrides this process's): the bundle's own model/.
    with serve_app(bundle, tmp_path / "app.log", GPT2CHAT_MODEL="", GPT2CHAT_MEDQUAD=str(medquad_dir)) as url:
        answer = Client(url, verbose=False).predict(sample_records[0].question, 0.0, 24, True, api_name="/ask")
    log = (tmp_path / "app.log").read_text()
    assert MARKDOWN_LINK.search(answer) and REPLY_DISCLAIMER in answer, answer
    assert f"Loading {(bundle / 'model').resolve()}\n" in log, log
    assert "Model ready" in log and sample_records[0].question not in log
