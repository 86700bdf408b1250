"""What gpt2chat writes goes under $GPT2CHAT_HOME, else the working directory: never where the package is installed.
Run in a fresh process from another directory, as an installed gpt2chat is (scripts/setup.sh installs it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from gpt2chat import settings

PATHS = ("HOME", "DEFAULT_MODEL_DIR", "LIVRABLES_DIR", "RUNS_DIR", "FEEDBACK_DB")


def settings_seen_from(cwd: Path, **env) -> dict[str, str]:
    code = ("import json; from gpt2chat import settings as s; "
            f"print(json.dumps({{**{{n: str(getattr(s, n)) for n in {PATHS!r}}}, 'cache': str(s.cache_dir())}}))")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GPT2CHAT_")} | env
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_paths_default_to_the_working_directory(tmp_path):
    seen = settings_seen_from(tmp_path)
    assert seen == {"HOME": str(tmp_path), "DEFAULT_MODEL_DIR": str(tmp_path / "models" / "default"),
                    "LIVRABLES_DIR": str(tmp_path / "livrables"), "RUNS_DIR": str(tmp_path / "runs"),
                    "FEEDBACK_DB": str(tmp_path / "data" / "feedback" / "feedback.sqlite3"),
                    "cache": str(tmp_path / ".cache")}
    assert not any(Path(path).is_relative_to(settings.PACKAGE_DIR) for path in seen.values())


def test_gpt2chat_home_wins(tmp_path):
    home = tmp_path / "home"
    seen = settings_seen_from(tmp_path, GPT2CHAT_HOME=str(home))
    assert seen["HOME"] == str(home) and seen["DEFAULT_MODEL_DIR"] == str(home / "models" / "default")
    assert seen["cache"] == str(home / ".cache") and (home / ".cache").is_dir()
