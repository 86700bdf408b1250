"""LLM-as-judge: scores 1-5 of each answer against its NIH reference, from any OpenAI-compatible endpoint.

The judge is optional: without a URL the comparison report says it was skipped, and an endpoint that fails
(unreachable, HTTP error, unexpected reply) becomes a note in the report rather than a crash.
"""

from __future__ import annotations

import dataclasses
import re
import statistics

from gpt2chat import settings

JUDGE_PROMPT = (
    "You grade answers of a small medical question-answering model against a reference answer from NIH. "
    "Score the model answer from 1 to 5: 5 = correct and covers the key facts of the reference; "
    "4 = correct but misses some key facts; 3 = partly correct or only loosely relevant; "
    "2 = mostly wrong or off-topic; 1 = wrong, unreadable or empty. Reply with the digit only."
)
REFERENCE_CHARS = 1500  # enough for the key facts of most NIH answers, and keeps each request small


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    url: str | None = None  # None: no judge, the section is skipped
    model: str = "gpt-4o-mini"
    key: str | None = None  # sent as a bearer token; never written to the report
    progress: bool = True
    timeout: float = 60.0  # seconds per request


def judge_endpoint(url: str) -> str:
    """Accept a base URL (``http://host:8000`` or ``…/v1``) or the full chat-completions endpoint."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def judge_score(question: str, reference: str, answer: str, config: JudgeConfig, session) -> int | None:
    """One 1-5 score, or None when the reply holds no digit 1-5. Network and HTTP errors propagate."""
    content = (f"Question: {question}\n\nReference answer: {reference[:REFERENCE_CHARS]}\n\n"
               f"Model answer: {answer or '(empty)'}\n\nScore (1-5):")
    response = session.post(
        judge_endpoint(config.url),
        json={"model": config.model, "temperature": 0, "max_tokens": 5,
              "messages": [{"role": "system", "content": JUDGE_PROMPT}, {"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {config.key}"} if config.key else {},
        timeout=config.timeout,
    )
    response.raise_for_status()
    match = re.search(r"[1-5]", response.json()["choices"][0]["message"]["content"])
    return int(match.group()) if match else None


def run_judge(results: dict, questions, config: JudgeConfig) -> dict:
    """Scores for every model and mode of ``results`` (``{label: {"modes": {mode: {"predictions": [...]}}}}``,
    predictions in the order of ``questions``, records with ``.question`` and ``.answer``).

    ``status`` is skipped (no URL), failed (with the error in ``note``) or ok (with ``scores`` and ``means``)."""
    if not config.url:
        return {"status": "skipped",
                "note": f"No judge configured (--judge-url or ${settings.JUDGE_URL_ENV}); the LLM-as-judge section was "
                        "skipped."}
    import requests
    from tqdm import tqdm

    scores: dict = {}
    with requests.Session() as session:
        try:
            for label, result in results.items():
                for mode, answers in result["modes"].items():
                    scores.setdefault(label, {})[mode] = [
                        judge_score(r.question, r.answer, p, config, session)
                        for r, p in tqdm(list(zip(questions, answers["predictions"])), desc=f"judge {label}: {mode}",
                                         disable=not config.progress)
                    ]
        except (requests.RequestException, KeyError, IndexError, ValueError) as error:
            return {"status": "failed", "url": config.url, "model": config.model,
                    "note": f"The judge at {config.url} could not be used ({type(error).__name__}: {error}); "
                            "no scores were recorded."}
    means = {label: {mode: _mean([s for s in values if s is not None]) for mode, values in modes.items()}
             for label, modes in scores.items()}
    unparsed = sum(s is None for modes in scores.values() for values in modes.values() for s in values)
    return {"status": "ok", "url": config.url, "model": config.model, "scores": scores,
            "means": means, "unparsed": unparsed}


def _mean(values) -> float | None:
    return statistics.fmean(values) if values else None
