"""Report rendering: Markdown tables from DataFrames, HTML from Markdown, and the comparison report's charts.

Every report of the project (EDA, comparison, the loader's report) writes its tables with
``gpt2chat.markdown.markdown_table`` (``DataFrame.to_markdown``, i.e. tabulate) and, when it has an HTML version, renders it from the Markdown with
``markdown_to_html`` (markdown-it-py, CommonMark plus tables), so a report's two versions cannot disagree.

    python -m gpt2chat.compare ...          # writes comparison.md/.html/.json and the charts through this module
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from gpt2chat.markdown import markdown_table
from gpt2chat.reports.metrics import METRIC_LABELS, TEXT_METRICS

SIDE_BY_SIDE_CHARS = 400  # untrained models ramble: keep the side-by-side tables readable
HTML_STYLE = ("body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;"
              "line-height:1.45}table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;"
              "padding:.3rem .5rem;vertical-align:top}th{background:#f3f3f3}"
              "img{max-width:100%}code{background:#f3f3f3;padding:0 .2rem}")


# ---------------------------------------------------------------------------------------------------- generic


def markdown_to_html(markdown: str, title: str, *, image_dir: Path | None = None) -> str:
    """A self-contained HTML page of a Markdown report: CommonMark plus tables (markdown-it-py), raw HTML in the
    Markdown escaped (reports quote model output), and images found in ``image_dir`` inlined as data URIs."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(markdown)
    if image_dir is not None:
        for token in tokens:
            for child in token.children or ():
                source = image_dir / str(child.attrGet("src") or "")
                if child.type == "image" and source.is_file():
                    child.attrSet("src", "data:image/png;base64," + base64.b64encode(source.read_bytes()).decode())
    body = parser.renderer.render(tokens, parser.options, {})
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n{body}</body></html>\n")


# ---------------------------------------------------------------------------------------------------- comparison


def _mode_frame(result: dict, row_of, *, grounded_only: bool = False):
    """One row per model (or baseline) and grounding mode: the model, the mode's label, then ``row_of(answers)``;
    a mode whose ``row_of`` is None (or, with ``grounded_only``, the ungrounded mode) has no row."""
    import pandas as pd

    rows = []
    for label, r in result["results"].items():
        for mode, answers in r["modes"].items():
            row = None if grounded_only and mode == "ungrounded" else row_of(answers)
            if row is not None:
                rows.append({"model": label, "grounding": result["grounding_modes"][mode]["label"], **row})
    return pd.DataFrame(rows)


def summary_frame(result: dict):
    """One row per model and grounding mode: the numbers of the comparison's main table."""
    def row_of(answers):
        metrics, latency = answers["metrics"], answers["latency"]
        return {**{METRIC_LABELS[m]: metrics[m] for m in TEXT_METRICS}, "words": metrics["answer_words"],
                "s/answer": latency["seconds_per_answer"], "tokens/s": latency["tokens_per_second"]}

    return _mode_frame(result, row_of)


def grounding_frame(result: dict):
    """One row per model (or baseline) and grounding mode: support, fallback and degenerate rates (fractions), and
    the model's own text scored against the gold answer."""
    def row_of(answers):
        grounding, own = answers["grounding"], answers.get("model_text_metrics") or {}
        return {"support": grounding["support_rate"], "fallback": grounding["fallback_rate"],
                "degenerate (model text)": grounding["degenerate_model_text"],
                "degenerate (shown)": grounding["degenerate_shown"],
                "ROUGE-L (model text)": own.get("rougeL"), "token F1 (model text)": own.get("token_f1")}

    return _mode_frame(result, row_of)


def same_length_frame(result: dict):
    """One row per model and grounded mode: the shown answer's ROUGE-L beside the cited passage's lead cut to the
    same number of words, and to the same number of sentences."""
    def row_of(answers):
        lead = answers.get("lead_same_length")
        if lead is None:
            return None
        shown, words, sentences = answers["metrics"], lead["words"], lead["sentences"]
        return {"ROUGE-L (shown)": shown["rougeL"], "words": shown["answer_words"],
                "ROUGE-L (lead, same words)": words["rougeL"],
                "ROUGE-L (lead, same sentences)": sentences["rougeL"],
                "words (lead, same sentences)": sentences["answer_words"],
                "shown − lead (same words)": shown["rougeL"] - words["rougeL"]}

    return _mode_frame(result, row_of, grounded_only=True)


def copy_order_frame(result: dict):
    """One row per model and grounded mode with copied sentences: how often the model just copies the lead."""
    def row_of(answers):
        order = answers.get("copy_order")
        return None if order is None else {
            "answers copying a passage sentence": order["answers"],
            "open with its first sentence": order["starts_at_first_sentence"],
            "are exactly its lead": order["is_the_lead"],
            "first copied sentence (mean position)": order["first_position_mean"]}

    return _mode_frame(result, row_of, grounded_only=True)


def _summary_formats() -> dict[str, str]:
    return {**{METRIC_LABELS[m]: "{:.1f}" for m in TEXT_METRICS},
            "words": "{:.0f}", "s/answer": "{:.2f}", "tokens/s": "{:.0f}"}


def plot_comparison(result: dict, out: Path) -> list[tuple[Path, str]]:
    """Bar charts of the answer metrics, perplexity and latency; returns (path, caption) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = result["grounding_modes"]
    labels = list(result["results"])
    width = 0.8 / max(len(labels), 1)
    x = np.arange(len(modes))
    ticks = [m["short"] for m in modes.values()]

    def grouped_bars(axis, value_of):
        for i, label in enumerate(labels):
            answered = result["results"][label]["modes"]
            values = [value_of(answered[m]) if m in answered else 0.0 for m in modes]
            axis.bar(x + i * width, values, width, label=label)
        axis.set_xticks(x + width * (len(labels) - 1) / 2, ticks, fontsize=8)

    figures = []
    figure, axes = plt.subplots(1, len(TEXT_METRICS), figsize=(3.2 * len(TEXT_METRICS), 3.6))
    for axis, metric in zip(axes, TEXT_METRICS):
        grouped_bars(axis, lambda answers: answers["metrics"][metric])
        axis.set_title(METRIC_LABELS[metric])
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(labels), fontsize=8)
    figure.suptitle(f"Answer quality on {result['test_set']['questions']} test questions (higher is better)")
    figures.append((figure, out / "comparison_quality.png", "Answer quality by grounding mode"))

    figure, axis = plt.subplots(figsize=(5, 3.4))
    measured = [(i, label) for i, label in enumerate(labels) if result["results"][label].get("perplexity")]
    axis.bar([label for _, label in measured],
             [result["results"][label]["perplexity"]["perplexity"] for _, label in measured],
             color=[f"C{i}" for i, _ in measured])
    axis.set_yscale("log")
    axis.set_title("Test perplexity (log scale, lower is better)")
    axis.tick_params(axis="x", labelsize=7)
    figures.append((figure, out / "comparison_perplexity.png", "Test perplexity"))

    figure, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for axis, key, title in ((axes[0], "seconds_per_answer", "Seconds per answer (median)"),
                             (axes[1], "tokens_per_second", "Tokens per second (median)")):
        grouped_bars(axis, lambda answers: answers["latency"][key])
        axis.set_title(title)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(labels), fontsize=8)
    figures.append((figure, out / "comparison_latency.png", "Generation latency (CPU, greedy)"))

    written = []
    for figure, path, caption in figures:
        figure.tight_layout(rect=(0, 0.07, 1, 1))  # room for the legend below the axes
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append((path, caption))
    return written


# What each kind of model is, for the conclusion: ``gpt2chat.reports.compare`` labels every model with one.
FAMILIES = {"generic": "the generic model", "generic→specialised": "the generic model fine-tuned on MedQuAD",
            "specialised": "the specialised model trained from scratch", "untrained": "the untrained model"}
DOMAINS = {"general": "held-out general English text", "medquad": "MedQuAD test answers"}


def _by_family(result: dict) -> dict[str, str]:
    """The first model label of each family (``FAMILIES``) that was measured."""
    found = {}
    for model in result["models"]:
        if model.get("family") in FAMILIES and model["label"] in result["results"]:
            found.setdefault(model["family"], model["label"])
    return found


def domain_frame(result: dict):
    """One row per model: perplexity on each plain-text domain (every token), lower is better."""
    import pandas as pd

    roles = {m["label"]: m["role"] for m in result["models"]}
    return pd.DataFrame([{"model": label, "role": roles.get(label, ""),
                          **{DOMAINS[name]: r["domain_perplexity"][name]["perplexity"] for name in DOMAINS
                             if name in r["domain_perplexity"]}}
                         for label, r in result["results"].items() if r.get("domain_perplexity")])


def shown_frame(result: dict):
    """One row per system and answer set: the shown-answer measures of ``gpt2chat.reports.answer_quality``."""
    import pandas as pd

    rows = []
    for label, r in result["results"].items():
        for name, m in (r.get("shown") or {}).items():
            rows.append({"set": f"({name})", "system": label, "ROUGE-2": m["rouge2"], "ROUGE-L": m["rougeL"],
                         "words": m["words"], "answered": m["answered"],
                         "model text shown": None if "baseline" in label else m["model_shown"],
                         "support": m["support"], "degenerate shown": m["degenerate_shown"]})
    return pd.DataFrame(rows).sort_values("set", kind="stable") if rows else pd.DataFrame()


def comparison_conclusion(result: dict) -> str:
    """The report's opening paragraph, every figure and every comparison word taken from ``result``."""
    family = _by_family(result)
    results = result["results"]

    def ppl(label, domain):
        return results[label].get("domain_perplexity", {}).get(domain, {}).get("perplexity")

    sentences = []
    generic, specialised = family.get("generic"), family.get("specialised")
    if generic and specialised and ppl(generic, "general") and ppl(specialised, "medquad"):
        g_gen, s_gen, g_med, s_med = (ppl(generic, "general"), ppl(specialised, "general"), ppl(generic, "medquad"),
                                      ppl(specialised, "medquad"))
        own = g_gen < s_gen and s_med < g_med
        sentences.append(
            f"Perplexity (lower is better) on {DOMAINS['general']}: {g_gen:,.1f} for the generic model "
            f"(`{generic}`) against {s_gen:,.1f} for the specialised model trained from scratch (`{specialised}`); "
            f"on {DOMAINS['medquad']}: {g_med:,.1f} against {s_med:,.1f}. "
            + ("Each model is better on its own domain, as it should be." if own else
               "The expected split, each model better on its own domain, does not hold here: "
               + ("the generic model is " + ("better" if g_gen < s_gen else "not better") + " on general text and "
                  + ("better" if g_med < s_med else "not better") + " on MedQuAD answers.")))
    both = family.get("generic→specialised")
    if both and specialised and ppl(both, "medquad"):
        b_med, s_med = ppl(both, "medquad"), ppl(specialised, "medquad")
        sentences.append(
            f"Starting the specialised model from the generic one (`{both}`) gives {b_med:,.1f} on MedQuAD answers, "
            + ("better than" if b_med < s_med else "no better than") + f" training from scratch ({s_med:,.1f})"
            + (f", and keeps {ppl(both, 'general'):,.1f} on general text." if ppl(both, "general") else "."))
    shown_set = next((name for name in ("b", "a", "c") if name in result.get("shown_sets", {})), None)
    if shown_set:
        scores = {label: r["shown"][shown_set]["rouge2"] for label, r in results.items() if r.get("shown")}
        order = sorted(scores, key=scores.get, reverse=True)
        sentences.append(
            f"In the answers users are shown ({result['shown_sets'][shown_set]}, ROUGE-2 against the NIH answer), "
            + ", ".join(f"`{label}` scores {scores[label]:.2f}" for label in order)
            + f": `{order[0]}` leads.")
    if not sentences:
        return "No conclusion: the models needed for it (a generic and a specialised run) were not both measured."
    return " ".join(sentences)


def comparison_markdown(result: dict, images: list[tuple[Path, str]]) -> str:
    """The comparison report as Markdown, images linked by file name (they sit beside the report)."""
    import pandas as pd

    test = result["test_set"]
    modes = result["grounding_modes"]
    blocks = ["# Model comparison: generic vs specialised GPT-2 on MedQuAD",
              f"Generated {result['created']}" + (f" by `{result['command']}`" if result["command"] else "")
              + f" on {result['environment']}."]
    blocks += ["## Conclusion", comparison_conclusion(result)]
    blocks += [f"**Note:** {note}" for note in result["notes"]]

    models = pd.DataFrame([{"model": m["label"], "role": m["role"], "parameters": m.get("parameters"),
                            "details": _model_details(m)} for m in result["models"]])
    blocks += ["## Models", markdown_table(models, {"parameters": "{:,.0f}"})]

    blocks += ["## Test set", "\n".join(f"- {item}" for item in (
        f"Held-out TEST split ({test['split_source']}): {test['test_pairs']} question-answer pairs about foci "
        "(diseases, drugs, topics) that no training example mentions.",
        f"Perplexity: {test['perplexity_rows']} seeded rows of {test['sequence_length']} tokens "
        f"({test['perplexity_tokens']:,} predicted tokens), packed test pairs in the training prompt format "
        "without a reference passage, teacher-forced.",
        f"Answers: greedy decoding, at most {test['max_new_tokens']} new tokens, through the chat engine "
        f"(masking, safety, post-processing), for {test['questions']} seeded test questions; scored against the "
        "full NIH answer: ROUGE-1/2/L F-measure (rouge_score, Porter stemmer), corpus BLEU (sacrebleu, 13a), "
        "SQuAD-style token F1 over lowercase words, all in percent.",
    ))]
    blocks.append(
        "**Grounding caveat:** the retrieval knowledge base holds every answered MedQuAD pair, test pairs "
        "included, so with grounding the reference passage given to the model is often the gold answer itself "
        f"(top passage = gold pair for {percent(result['gold_passage_on_top'])} of the test questions). "
        "The _grounded_ rows therefore measure how well a model copies a relevant passage, not what it knows. "
        "The _gold pair excluded_ rows search again without the test pair (and without any pair with the same "
        "answer text), which is the fairer reading of grounded quality; other pairs about the same focus remain."
    )

    perplexity = pd.DataFrame([{"model": label, "perplexity": r["perplexity"]["perplexity"],
                                "loss (nats/token)": r["perplexity"]["loss"],
                                "answer-token loss, passage in prompt": (r.get("answer_loss") or {}).get("loss"),
                                "answer-token perplexity": (r.get("answer_loss") or {}).get("perplexity")}
                               for label, r in result["results"].items() if r.get("perplexity")])
    blocks += ["## Results", "### Perplexity on the test split",
               markdown_table(perplexity, {"perplexity": "{:,.1f}", "loss (nats/token)": "{:.3f}",
                                           "answer-token loss, passage in prompt": "{:.3f}",
                                           "answer-token perplexity": "{:,.1f}"})]
    if test.get("answer_rows"):
        blocks.append(f"The first two columns score every token of packed test pairs without a passage; the last two "
                      f"only the answer tokens ({test['answer_tokens']:,} in {test['answer_rows']} seeded rows) of "
                      "grounded test examples, the gold passage quoted as the reference and the target cut as in "
                      "training: the quantity the model was trained to lower.")
    domains = domain_frame(result)
    if not domains.empty:
        blocks += ["### Perplexity on general text and on MedQuAD answers", markdown_table(
            domains, {name: "{:,.1f}" for name in DOMAINS.values()}),
            f"Plain text, every token counted: {result['domain_rows'].get('general', 0)} and "
            f"{result['domain_rows'].get('medquad', 0)} seeded rows of {test['sequence_length']} tokens of the "
            "WordNet test split (`gpt2chat.corpus.generic`, never trained on) and of MedQuAD test answers."]
    shown = shown_frame(result)
    if not shown.empty:
        blocks += ["### The answers users are shown", markdown_table(shown, {
            "ROUGE-2": "{:.2f}", "ROUGE-L": "{:.2f}", "words": "{:.0f}", "model text shown": percent,
            "support": percent}),
            "Each model in the served pipeline (it selects the page's sentences it shows) against the "
            "question-focused extract, measured as `python -m gpt2chat.answer_quality` measures them: "
            + "; ".join(f"({name}) {label}" for name, label in result["shown_sets"].items()) + "."]
    blocks += ["### Answers to test questions", markdown_table(summary_frame(result), _summary_formats())]
    blocks.append(f"Reference answers average {test['reference_words']:.0f} words; answers are capped at "
                  f"{test['max_new_tokens']} tokens, which bounds recall-heavy scores, and BLEU's brevity "
                  "penalty brings answers much shorter than the reference close to 0 whatever they say. "
                  "Latency is the median over answers on this machine's CPU; it includes the first compilation "
                  "of each prompt-length bucket only in the few answers that hit it.")
    blocks += ["### Grounding", markdown_table(grounding_frame(result), {
        "support": percent, "fallback": percent, "degenerate (model text)": percent, "degenerate (shown)": percent,
        "ROUGE-L (model text)": "{:.1f}", "token F1 (model text)": "{:.1f}"})]
    blocks.append("The table above scores what a reader is shown: the model's sentences that the cited passage "
                  "supports, or, when too few are (under half) or what is left is degenerate, the question-focused "
                  "extract of the passage. Here _support_ is the share of all the model's own sentences (all the "
                  "baseline's, for a baseline) that the cited passage supports (K-Precision and extractive "
                  "coverage/density, `gpt2chat.chat.grounding.verify`); _fallback_ the share of replies whose model "
                  "text was replaced by the extract; _degenerate_ the share of answers that are empty, under 5 words, "
                  "repeat 4-grams or are word salad against the vocabulary of every NIH answer "
                  "(`gpt2chat.chat.grounding.is_degenerate`). The last two columns score the model's own text against "
                  "the gold answer. Baselines answer without a model, so only from a retrieved passage.")
    blocked = {label: sum(c in ("emergency", "invalid") for answers in r["modes"].values()
                          for c in answers["categories"])
               for label, r in result["results"].items()}
    if any(blocked.values()):
        blocks.append(f"Answers refused by the engine's safety or input checks (scored as empty): {blocked}.")
    same_length = same_length_frame(result)
    if not same_length.empty:
        blocks += ["### Against the passage's lead at the same length", markdown_table(same_length, {
            "ROUGE-L (shown)": "{:.1f}", "words": "{:.0f}", "ROUGE-L (lead, same words)": "{:.1f}",
            "ROUGE-L (lead, same sentences)": "{:.1f}", "words (lead, same sentences)": "{:.0f}",
            "shown − lead (same words)": "{:+.1f}"})]
        blocks.append("ROUGE-L rewards length when answers are much shorter than the reference, so each shown answer "
                      "is set against the lead of the passage it cites cut to the same length: its first as many "
                      "words, and its first as many sentences (about the same length when the answer is whole "
                      "sentences). A negative last column means the shown answers score below the lead of the same "
                      "length.")
    copying = copy_order_frame(result)
    if not copying.empty:
        blocks += ["### Which passage sentences the model copies", markdown_table(copying, {
            "open with its first sentence": percent, "are exactly its lead": percent,
            "first copied sentence (mean position)": "{:.1f}"})]
        blocks.append("Over the model answers whose first sentence is a verbatim sentence of the cited passage: the "
                      "share that open with the passage's first sentence, the share that are exactly the passage's "
                      "first k sentences in order, and the mean position (0 = first) of the sentence they open with. "
                      "Under the copy constraint the model chooses which sentence to start and when to stop; these "
                      "columns show how far that choice departs from the lead.")
    blocks += [f"![{caption}]({path.name})" for path, caption in images]

    blocks.append("## LLM-as-judge")
    judge = result["judge"]
    if judge["status"] == "ok":
        blocks.append(f"`{judge['model']}` at {judge['url']} scored each answer 1–5 against the NIH reference "
                      f"(mean shown; {judge['unparsed']} replies without a score were left out).")
        means = pd.DataFrame([{"model": label, **{modes[m]["label"]: v for m, v in by_mode.items()}}
                              for label, by_mode in judge["means"].items()])
        blocks.append(markdown_table(means, {modes[m]["label"]: "{:.2f}" for m in modes}))
    else:
        blocks.append(judge["note"])

    blocks += ["## Side by side: general medical questions",
               "Greedy answers through the chat engine as a reader sees them (supported model sentences, or "
               "the labelled extract); _grounded_ adds the top retrieved NIH passage to the prompt. "
               f"Answers longer than {SIDE_BY_SIDE_CHARS} characters are cut here (in full in the JSON)."]
    for question in result["general_questions"]:
        answered = {label: r["side_by_side"][question] for label, r in result["results"].items()
                    if question in r.get("side_by_side", {})}  # baselines have no side-by-side answers
        answers = pd.DataFrame([{"model": label, "without grounding": _shorten(by_mode["ungrounded"]),
                                 "with grounding": _shorten(by_mode["grounded"])}
                                for label, by_mode in answered.items()])
        blocks += [f"### {question}", markdown_table(answers)]

    blocks += ["## Files",
               "`comparison.json` holds every prediction, reference and per-answer timing behind these "
               "tables; `comparison.html` is this report with the charts inlined. " + result["pdf_note"]]
    return "\n\n".join(blocks) + "\n"


def _shorten(answer: str) -> str:
    if not answer:
        return "–"
    return answer if len(answer) <= SIDE_BY_SIDE_CHARS else answer[:SIDE_BY_SIDE_CHARS].rsplit(" ", 1)[0] + " …"


def _model_details(model: dict) -> str:
    if not model["available"]:
        return f"**unavailable**: {model['error']}"
    details = [f"context {model['context']}"] if model.get("context") else []
    if model.get("note"):
        details.append(model["note"])
    training = model.get("training")
    if training:
        source = (f"fine-tuned from {training['preset']}" if training["preset"]
                  else f"from scratch, size {training['size']}")
        if training.get("corpus") == "generic":
            source += ", on general English (WordNet), no MedQuAD"
        details.append(f"{source}, {training['steps']} steps of {training['batch_size']}x{training['sequence_length']}")
        if training.get("best_val_perplexity"):
            details.append(f"best validation perplexity {training['best_val_perplexity']:.1f} "
                           f"at step {training['best_step']}")
    return "; ".join(details)


def percent(value) -> str:
    return f"{100 * value:.0f}%" if value is not None and value == value else "n/a"


def write_comparison(result: dict, out: Path) -> dict[str, Path]:
    """comparison.md, .html (charts inlined), .json and the PNG charts into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    images = plot_comparison(result, out)
    markdown = comparison_markdown(result, images)
    paths = {"markdown": out / "comparison.md", "json": out / "comparison.json", "html": out / "comparison.html"}
    paths["markdown"].write_text(markdown, encoding="utf-8")
    paths["html"].write_text(markdown_to_html(markdown, "GPT-2 model comparison on MedQuAD", image_dir=out),
                             encoding="utf-8")
    paths["json"].write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    for path, _ in images:
        paths[path.stem] = path
    return paths
