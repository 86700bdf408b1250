"""Every notebook in notebooks/ runs top to bottom on a small MedQuAD sample, writing only into a temp dir, and
produces what it promises (figures, a trained run and an answer, a comparison report).

Notebooks read GPT2CHAT_NOTEBOOK_SMALL=1 (use a small sample) and GPT2CHAT_NOTEBOOK_OUT (where to write); the
kernel runs in a temp dir, imports the installed gpt2chat, reads the first 40 files of every MedQuAD subset
(``small_medquad``), and uses this checkout as $GPT2CHAT_HOME with its caches in a temp dir (a cache of the sample
would replace the checkout's retrieval index of the whole collection).

The notebooks share one output folder, as they share livrables/ outside the tests: 03 compares the tiny run that 02
trained, which it finds finished (``train`` resumes a run of the same settings) instead of training it again.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from gpt2chat import settings
from tests.conftest import seed_index_cache

CHECKOUT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((CHECKOUT / "notebooks").glob("*.ipynb"))
PNG = b"\x89PNG\r\n\x1a\n"


def text_outputs(notebook) -> str:
    """Everything the cells printed or displayed as text/Markdown, in order."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            data = output.get("data", {})
            parts.append(data.get("text/markdown", "") or data.get("text/plain", ""))
    return "\n".join(parts)


def check_eda(out: Path, printed: str) -> None:
    for name in ("sources", "question_types", "top_foci", "lengths", "wordcloud_questions", "wordcloud_answers",
                 "wordcloud_by_type"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG, name
    pairs = re.search(r"([\d,]+) answered pairs, ([\d,]+) distinct foci", printed)
    assert pairs and int(pairs[1].replace(",", "")) > int(pairs[2].replace(",", "")) > 0


def check_fine_tuning(out: Path, printed: str) -> None:
    metrics = json.loads((out / "tiny-run" / "metrics.json").read_text())
    assert [entry["step"] for entry in metrics["history"]] == [10, 20]  # the tiny recipe: 20 steps, eval every 10
    assert f"best validation perplexity {metrics['best_val_perplexity']:.1f} at step {metrics['best_step']}" in printed
    assert printed.count("the user reads:") == 2  # without and with grounding


def check_comparison(out: Path, printed: str) -> None:
    result = json.loads((out / "comparison" / "comparison.json").read_text())
    assert len(result["results"]) >= 2  # the tiny run and the untrained model, at least
    markdown = (out / "comparison" / "comparison.md").read_text()
    assert re.search(r"^\| model +\| role", markdown, re.M) and "scratch:tiny" in markdown
    assert f"report: {out / 'comparison' / 'comparison.md'}" in printed


CHECKS = {"01_eda.ipynb": check_eda, "02_fine_tuning.ipynb": check_fine_tuning,
          "03_comparison.ipynb": check_comparison}


def test_every_notebook_is_checked():
    assert sorted(CHECKS) == [path.name for path in NOTEBOOKS]


@pytest.fixture(scope="module")
def notebook_out(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


# A notebook that reads what another wrote runs after it, in its thread; the others run at the same time, in threads
# of their own (each notebook is a kernel process, mostly one core's work: in sequence the three took 130 s of the
# suite on the 2-core machine).
AFTER = {"03_comparison.ipynb": "02_fine_tuning.ipynb"}
NEEDS_THE_INDEX = {"02_fine_tuning.ipynb", "03_comparison.ipynb"}  # they answer questions


@pytest.fixture(scope="module")
def executed(request, small_medquad, notebook_out, tmp_path_factory):
    """The selected notebooks, each executed by its own kernel (a child process with the environment below), started
    together: {name: a future of the executed notebook}. Waiting for one raises CellExecutionError, with the failing
    cell's traceback, if any of its cells failed."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from concurrent.futures import Future, ThreadPoolExecutor

    selected = [path for path in NOTEBOOKS
                if any(item.module is request.module and getattr(item, "callspec", None)
                       and item.callspec.params.get("path") == path for item in request.session.items)]
    environment = {**os.environ, "GPT2CHAT_NOTEBOOK_SMALL": "1", "GPT2CHAT_NOTEBOOK_OUT": str(notebook_out),
                   settings.HOME_ENV: str(CHECKOUT), settings.MEDQUAD_ENV: str(small_medquad),
                   settings.CACHE_ENV: str(notebook_out / "cache")}
    futures = {path.name: Future() for path in selected}

    def execute_in_order(chain):
        for path in chain:
            futures[path.name].set_running_or_notify_cancel()
            try:
                notebook = nbformat.read(path, as_version=4)
                nbclient.NotebookClient(notebook, kernel_name="python3", timeout=600, resources={
                    "metadata": {"path": str(tmp_path_factory.mktemp("kernel"))}}).execute(env=environment)
                futures[path.name].set_result(notebook)
            except BaseException as error:  # re-raised by the test that waits for this notebook
                futures[path.name].set_exception(error)

    chains = []
    for path in selected:  # in name order: a notebook comes after the one it reads
        chain = next((chain for chain in chains if chain[-1].name == AFTER.get(path.name)), None)
        if chain is None:
            chains.append([path])
        else:
            chain.append(path)
    with ThreadPoolExecutor(max_workers=len(chains) or 1) as pool:
        # The notebooks that need no index start first; the others once the sample's index (built once for the run,
        # 19 s) is in their cache.
        for chain in sorted(chains, key=lambda chain: chain[0].name in NEEDS_THE_INDEX):
            if chain[0].name in NEEDS_THE_INDEX and not (notebook_out / "cache" / "retrieval").exists():
                seed_index_cache(request.getfixturevalue("small_medquad_index_cache"), notebook_out / "cache")
            pool.submit(execute_in_order, chain)
        yield futures


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, executed, notebook_out):
    notebook = executed[path.name].result()  # raises CellExecutionError if any cell failed
    CHECKS[path.name](notebook_out, text_outputs(notebook))
