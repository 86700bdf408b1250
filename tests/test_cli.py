"""Every entry point answers --help (a flag it promises must exist) without a traceback."""

import subprocess
import sys

import pytest

ENTRY_POINTS = ["data", "train", "sweep", "masking", "masking_eval", "safety", "retrieval", "grounding", "engine",
                "followups", "feedback", "deploy", "eda", "compare", "slides", "export"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help(module):
    result = subprocess.run([sys.executable, "-m", f"gpt2chat.{module}", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "Traceback" not in result.stderr


def test_app_help():
    result = subprocess.run([sys.executable, "app.py", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--model" in result.stdout
