"""Every notebook in notebooks/ runs top to bottom on a small MedQuAD sample, writing only into a temp dir.

Notebooks read GPT2CHAT_NOTEBOOK_SMALL=1 (use a small sample), GPT2CHAT_NOTEBOOK_OUT (where to write) and
GPT2CHAT_REPO_ROOT (the checkout to import gpt2chat from, since the kernel runs in the temp dir).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt2chat import settings

NOTEBOOKS = sorted((settings.REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, medquad_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # The kernel is a child process and inherits this environment.
    monkeypatch.setenv("GPT2CHAT_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("GPT2CHAT_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("GPT2CHAT_REPO_ROOT", str(settings.REPO_ROOT))
    monkeypatch.setenv(settings.MEDQUAD_ENV, str(medquad_dir))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell's traceback, if any cell fails
