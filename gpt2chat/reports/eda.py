"""Exploratory data analysis of the answered MedQuAD pairs: word clouds, length and category distributions.

    python -m gpt2chat.eda [--data DIR] [--out livrables/eda] [--limit-files N] [--no-tokens]

Writes PNG figures and a Markdown summary (``README.md``) into ``--out``. Lengths are counted in GPT-2 tokens,
the unit the model's context is measured in; ``--no-tokens`` skips them (no TensorFlow start-up, no length
figures, no context table). Statistics are computed with pandas on the table of ``gpt2chat.modeling.dataset`` (one row
per pair; its docstring lists the columns). The pieces are small functions so tests and the notebook can call
them one by one:

    table = dataset.load_table()
    stats = compute_stats(table.frame, table.report)
    plot_question_types(stats, Path("out/question_types.png"))
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import math
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from gpt2chat import settings
from gpt2chat.corpus.data import LoadReport, focus_key, load_records
from gpt2chat.modeling.dataset import TOKEN_COLUMNS, records_frame
from gpt2chat.markdown import markdown_table
from gpt2chat.reports.wordclouds import cloud_image, stopwords, word_frequencies


@dataclasses.dataclass(frozen=True)
class EdaConfig:
    contexts: tuple[int, ...] = (256, 512, 1024)  # context lengths (tokens) the table and histograms mark
    top_types: int = 8  # question types that get their own word cloud
    top_foci: int = 25
    max_words: int = 100  # per word cloud; more only adds unreadable specks
    top_words_listed: int = 10  # words per cloud quoted in the summary
    dpi: int = 100  # keeps every PNG well under 300 KB, so the figures can be committed
    seed: int = 0  # word-cloud layout, so re-runs give identical images
    batch_size: int = 512  # texts per tokenizer call (one progress-bar step)


# --- statistics -------------------------------------------------------------------------------------------------
# All computed from the table of ``gpt2chat.modeling.dataset.records_frame`` (one row per pair, lengths in GPT-2 tokens).


def has_token_lengths(frame) -> bool:
    return len(frame) > 0 and bool(frame[list(TOKEN_COLUMNS)].notna().all().all())


def length_summary(lengths) -> dict:
    """Mean, median, 90th and 99th percentile (linear interpolation) and maximum of a Series of lengths."""
    if len(lengths) == 0:
        return {"count": 0}
    lengths = lengths.astype("int64")
    return {
        "count": int(lengths.count()),
        "mean": float(lengths.mean()),
        "median": float(lengths.median()),
        "p90": float(lengths.quantile(0.90)),
        "p99": float(lengths.quantile(0.99)),
        "max": int(lengths.max()),
    }


def context_table(frame, contexts: Sequence[int]) -> list[dict]:
    """Per context length: answers longer than it, and question+answer examples that fit in it (whole)."""
    total = len(frame)
    rows = []
    for context in contexts:
        over = int((frame["answer_tokens"] > context).sum())
        fit = int((frame["example_tokens"] <= context).sum())
        rows.append({
            "context": int(context),
            "answers_over": over,
            "answers_over_pct": 100.0 * over / total if total else 0.0,
            "examples_fit": fit,
            "examples_fit_pct": 100.0 * fit / total if total else 0.0,
        })
    return rows


def _ranked(counts) -> list[tuple[str, int]]:
    """(name, count) pairs, largest first; equal counts keep their order of first appearance."""
    return [(name, int(count)) for name, count in counts.sort_values(ascending=False, kind="stable").items()]


def focus_counts(frame) -> list[tuple[str, int]]:
    """Pairs per focus, grouped with ``data.focus_key`` (sources spell "Breast cancer" / "Breast Cancer") and
    shown in the most frequent spelling."""
    named = frame.assign(key=frame["focus"].map(focus_key)).query("key != ''")
    spellings = named.groupby(["key", "focus"], sort=False).size()
    by_key = spellings.groupby(level="key", sort=False)
    top_spelling = [focus for _, focus in by_key.idxmax()]
    return _ranked(by_key.sum().set_axis(top_spelling))


def compute_stats(frame, report: LoadReport, config: EdaConfig = EdaConfig()) -> dict:
    """Everything the figures and the summary show, as plain numbers (no plotting)."""
    foci = focus_counts(frame)
    stats = {
        "records": len(frame),
        "files_read": report.files_read,
        "distinct_foci": len(foci),
        "report_table": report.table(),
        "sources": report.frame().to_dict("records"),
        "question_types": _ranked(frame["type"].value_counts(sort=False)),
        "top_foci": foci[: config.top_foci],
        "lengths": None,
        "contexts": None,
    }
    if has_token_lengths(frame):
        stats["lengths"] = {name: length_summary(frame[f"{name}_tokens"]) for name in ("question", "answer", "example")}
        stats["contexts"] = context_table(frame, config.contexts)
    return stats


def cloud_frequencies(frame, stats: dict, config: EdaConfig = EdaConfig()) -> dict[str, collections.Counter]:
    """Word counts per cloud: "questions", "answers" and one per top question type (its answers)."""
    clouds = {
        "questions": word_frequencies(frame["question"], stopwords("questions")),
        "answers": word_frequencies(frame["answer"], stopwords("answers")),
    }
    for question_type, _ in stats["question_types"][: config.top_types]:
        clouds[question_type] = word_frequencies(frame.loc[frame["type"] == question_type, "answer"],
                                                 stopwords("answers", question_type))
    return clouds


# --- figures ----------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, config: EdaConfig) -> Path:
    """PNG with a 256-colour palette: word clouds are full of anti-aliased edges that make RGBA PNGs three times
    larger for no visible gain, and the figures are committed."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=config.dpi, bbox_inches="tight", facecolor="white")
    _pyplot().close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


def plot_wordcloud(frequencies: collections.Counter, title: str, path: Path, config: EdaConfig = EdaConfig()) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.imshow(cloud_image(frequencies, 800, 400, max_words=config.max_words, seed=config.seed), interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return _save(fig, path, config)


def plot_wordcloud_grid(clouds: dict[str, collections.Counter], path: Path, config: EdaConfig = EdaConfig(),
                        progress: bool = False) -> Path:
    """One small cloud per question type, in a grid of up to four columns."""
    plt = _pyplot()
    columns = min(4, max(1, len(clouds)))
    rows = max(1, math.ceil(len(clouds) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    items: Iterable = clouds.items()
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, total=len(clouds), desc="word clouds by type", unit="cloud")
    for ax, (name, frequencies) in zip(axes.flat, items):
        ax.imshow(cloud_image(frequencies, 400, 220, max_words=config.max_words, seed=config.seed),
                  interpolation="nearest")
        ax.set_title(name)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, config)


def plot_lengths(frame, path: Path, config: EdaConfig = EdaConfig()) -> Path:
    """Histograms of question, answer and example lengths (the table's token columns); answers and examples on a
    log x axis."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("question", "Questions", False), ("answer", "Answers", True),
              ("example", "Question + answer examples", True))
    for ax, (name, title, log_x) in zip(axes, panels):
        values = frame[f"{name}_tokens"].to_numpy(dtype="int64")
        if len(values) == 0:
            continue
        if log_x:
            ax.set_xscale("log")
            bins = np.logspace(math.log10(max(1, values.min())), math.log10(values.max() + 1), 50)
        else:
            bins = np.arange(values.min(), values.max() + 2)
        ax.hist(values, bins=bins, color="steelblue")
        if log_x:
            ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # headroom so the context labels clear the bars
            for context in config.contexts:
                ax.axvline(context, color="crimson", linestyle="--", linewidth=1)
                ax.text(context, 0.99, f"{context} ", color="crimson", transform=ax.get_xaxis_transform(), va="top",
                        ha="right", rotation=90, fontsize=8)
        ax.set_title(f"{title} (median {np.median(values):.0f} tokens)")
        ax.set_xlabel("GPT-2 tokens")
        ax.set_ylabel("pairs")
    fig.tight_layout()
    return _save(fig, path, config)


def _ranked_bars(ranked: list, title: str, color: str, bar_height: float, path: Path, config: EdaConfig) -> Path:
    """Horizontal bars of (name, count) pairs, largest on top, each labelled with its count."""
    plt = _pyplot()
    names, counts = zip(*ranked) if ranked else ((), ())
    fig, ax = plt.subplots(figsize=(8, max(2.5, bar_height * len(names))))
    bars = ax.barh(list(names)[::-1], list(counts)[::-1], color=color)
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_xlabel("answered pairs")
    ax.set_title(title)
    return _save(fig, path, config)


def plot_question_types(stats: dict, path: Path, config: EdaConfig = EdaConfig()) -> Path:
    return _ranked_bars(stats["question_types"], "Question types", "steelblue", 0.35, path, config)


def plot_sources(stats: dict, path: Path, config: EdaConfig = EdaConfig()) -> Path:
    """Pairs per source folder, split into kept, dropped for no answer, and dropped as duplicates."""
    plt = _pyplot()
    sources = stats["sources"][::-1]
    names = [s["subset"] for s in sources]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.45 * len(names))))
    left = np.zeros(len(names))
    for key, label, color in (("kept", "kept", "seagreen"), ("no_answer", "dropped: no answer", "silver"),
                              ("duplicates", "dropped: duplicate", "darkorange")):
        values = np.array([s[key] for s in sources], dtype=float)
        ax.barh(names, values, left=left, label=label, color=color)
        left += values
    for y, total in enumerate(left):
        ax.text(total, y, f" {int(total):,}", va="center", fontsize=8)
    ax.set_xlabel("question-answer pairs")
    ax.set_title("MedQuAD sources: kept vs. dropped")
    ax.margins(x=0.08)  # room for the total labels
    ax.legend(loc="upper right")
    return _save(fig, path, config)


def plot_top_foci(stats: dict, path: Path, config: EdaConfig = EdaConfig()) -> Path:
    return _ranked_bars(stats["top_foci"], f"Top {len(stats['top_foci'])} foci", "slateblue", 0.3, path, config)


# --- summary ----------------------------------------------------------------------------------------------------


def context_table_markdown(rows: list[dict]) -> str:
    import pandas as pd

    columns = {"context": "context (tokens)", "answers_over": "answers longer", "answers_over_pct": "% of answers",
               "examples_fit": "Q+A examples that fit", "examples_fit_pct": "% of examples"}
    table = pd.DataFrame(rows, columns=list(columns)).rename(columns=columns)
    return markdown_table(table, {"% of answers": "{:.1f}%", "% of examples": "{:.1f}%"})


def question_types_markdown(stats: dict) -> str:
    import pandas as pd

    table = pd.DataFrame(stats["question_types"], columns=["question type", "pairs"])
    table["%"] = 100 * table["pairs"] / stats["records"]
    return markdown_table(table, {"pairs": "{:,}", "%": "{:.1f}%"})


def lengths_markdown(stats: dict) -> str:
    import pandas as pd

    columns = {"mean": "mean", "median": "median", "p90": "90th pct", "p99": "99th pct", "max": "max"}
    table = (pd.DataFrame.from_dict({name: s for name, s in stats["lengths"].items() if s["count"]}, orient="index",
                                    columns=list(columns))
             .rename(columns=columns).rename_axis("text").reset_index())
    return markdown_table(table, {"mean": "{:.0f}", "median": "{:.0f}", "90th pct": "{:.0f}", "99th pct": "{:.0f}",
                                  "max": "{:,}"})


def _top_words(frequencies: collections.Counter, n: int) -> str:
    return ", ".join(f"{word} ({count:,})" for word, count in frequencies.most_common(n)) or "(none)"


def render_markdown(stats: dict, figures: dict[str, Path], clouds: dict[str, collections.Counter], out_dir: Path,
                    config: EdaConfig = EdaConfig()) -> str:
    """The summary, with figures linked relative to ``out_dir`` so it renders on GitHub and in a checkout."""
    def image(key: str, alt: str) -> str:
        return f"![{alt}]({figures[key].relative_to(out_dir).as_posix()})" if key in figures else ""

    total = stats["records"]
    lines = [
        "# MedQuAD: exploratory data analysis",
        "",
        "Generated by `python -m gpt2chat.eda`; do not edit by hand. Only the answered pairs kept by "
        "`gpt2chat.corpus.data.load_records` are analysed (the three MedlinePlus subsets were published without "
        "answers, and exact duplicates are dropped).",
        "",
        f"**{total:,} answered pairs** from {stats['files_read']:,} XML files, about "
        f"**{stats['distinct_foci']:,} distinct foci** (diseases, drugs, topics; case-insensitive).",
        "",
        "## Sources: kept and dropped",
        "",
        stats["report_table"],
        "",
        image("sources", "pairs per source, kept vs. dropped"),
        "",
        "## Question types",
        "",
        question_types_markdown(stats),
        "",
        image("question_types", "question types"),
        "",
        f"## Top {len(stats['top_foci'])} foci",
        "",
        ", ".join(f"{name} ({count})" for name, count in stats["top_foci"]),
        "",
        image("top_foci", "top foci"),
        "",
    ]
    if stats["lengths"] is not None:
        lines += [
            "## Lengths in GPT-2 tokens",
            "",
            "An *example* is what the model is trained on: `Question: …\\nAnswer: …<|endoftext|>` "
            "(`gpt2chat.modeling.prompt.training_example`, without a reference passage).",
            "",
            lengths_markdown(stats),
            "",
            image("lengths", "length histograms"),
            "",
            "### Context length",
            "",
            context_table_markdown(stats["contexts"]),
            "",
            "Training packs examples into fixed rows, so a long answer is not lost, but an answer longer than the "
            "context can never be seen (or generated) whole: the context column says how much of the corpus a model "
            "of that context length can learn to answer in one piece.",
            "",
        ]
    else:
        lines += ["## Lengths", "", "Skipped (`--no-tokens`).", ""]
    lines += [
        "## Word clouds",
        "",
        "Stop words: wordcloud's English `STOPWORDS`, plus a curated list, because MedQuAD is generated from "
        "templates and NIH page layouts and a raw cloud shows the template rather than the medicine:",
        "",
        "- **boilerplate passages** repeated verbatim across thousands of answers are cut before counting "
        "(GARD's Human Phenotype Ontology preamble and frequency note, GHR's \"These resources address the diagnosis "
        "or management of …\" list, NCI's clinical-trial paragraphs);",
        "- **question-template words** (\"what\", \"are\", \"how many people are affected\", \"is … inherited\", "
        "\"genetic changes related to\", …) are removed from the question cloud only, since in answers words like "
        "\"genetic\" or \"risk\" carry content; what remains in questions is mostly the focus names;",
        "- **generic filler** that survives the English list (\"may\", \"also\", \"condition\", \"affected\", "
        "\"people\", \"many\", \"include\", …) is removed everywhere;",
        "- in each **per-type cloud** (answers of one question type) the type's own word is removed "
        "(\"treatment\" from the treatment cloud, \"symptoms\"/\"signs\" from the symptoms cloud, …).",
        "",
        f"Top words: **questions**: {_top_words(clouds['questions'], config.top_words_listed)}.",
        "",
        image("questions_cloud", "question word cloud"),
        "",
        f"**Answers**: {_top_words(clouds['answers'], config.top_words_listed)}.",
        "",
        image("answers_cloud", "answer word cloud"),
        "",
        f"### Answers by question type (top {len(clouds) - 2})",
        "",
        *[f"- **{name}**: {_top_words(freq, config.top_words_listed)}" for name, freq in clouds.items()
          if name not in ("questions", "answers")],
        "",
        image("type_clouds", "word clouds by question type"),
        "",
    ]
    return "\n".join(lines)


@dataclasses.dataclass
class EdaResult:
    stats: dict
    figures: dict[str, Path]
    summary: Path


def run_eda(frame, report: LoadReport, out_dir: str | Path, *, config: EdaConfig = EdaConfig(),
            progress: bool = False) -> EdaResult:
    """Statistics, figures and the Markdown summary of the pairs table ``frame`` (``gpt2chat.modeling.dataset``) into
    ``out_dir``; without token counts (<NA>) the length figure and tables are skipped."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = compute_stats(frame, report, config)
    clouds = cloud_frequencies(frame, stats, config)
    type_clouds = {k: v for k, v in clouds.items() if k not in ("questions", "answers")}
    figures = {
        "sources": plot_sources(stats, out_dir / "sources.png", config),
        "question_types": plot_question_types(stats, out_dir / "question_types.png", config),
        "top_foci": plot_top_foci(stats, out_dir / "top_foci.png", config),
        "questions_cloud": plot_wordcloud(clouds["questions"], "Questions", out_dir / "wordcloud_questions.png",
                                          config),
        "answers_cloud": plot_wordcloud(clouds["answers"], "Answers", out_dir / "wordcloud_answers.png", config),
        "type_clouds": plot_wordcloud_grid(type_clouds, out_dir / "wordcloud_by_type.png", config, progress),
    }
    if stats["lengths"] is not None:
        figures["lengths"] = plot_lengths(frame, out_dir / "lengths.png", config)
    summary = out_dir / "README.md"
    summary.write_text(render_markdown(stats, figures, clouds, out_dir, config), encoding="utf-8")
    return EdaResult(stats, figures, summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.eda", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help=f"MedQuAD directory (default: ${settings.MEDQUAD_ENV} or ../shared/medquad)")
    parser.add_argument("--out", default="livrables/eda", help="output directory (default: livrables/eda)")
    parser.add_argument("--limit-files", type=int, metavar="N", help="read only the first N files of each subset")
    parser.add_argument("--no-tokens", action="store_true", help="skip GPT-2 token lengths (no TensorFlow start-up)")
    args = parser.parse_args(argv)
    records, report = load_records(args.data, limit_files=args.limit_files, progress=True)
    tokenizer = None
    if not args.no_tokens:
        from gpt2chat.modeling.tokenizer import gpt2_tokenizer

        tokenizer = gpt2_tokenizer()
    config = EdaConfig()
    frame = records_frame(records, tokenizer=tokenizer, batch_size=config.batch_size, progress=True)
    result = run_eda(frame, report, args.out, config=config, progress=True)
    if result.stats["contexts"] is not None:
        print(context_table_markdown(result.stats["contexts"]))
    print(f"{len(result.figures)} figures and {result.summary} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
