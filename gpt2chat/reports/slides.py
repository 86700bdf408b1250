"""The project presentation, built from what the project has measured: ``livrables/presentation.pptx``.

    python -m gpt2chat.slides [--out livrables/presentation.pptx] [--model-dir models/default]

Every figure and number on the slides is read from a generated file — the EDA (``livrables/eda/``), the
training run's ``metrics.json``, the comparison (``comparison.json`` and its charts), ``optimisation.md``, the
app screenshot, ``data_and_legal.md`` (privacy, limits) and the feedback report — none is typed in here. A
section whose source is missing is left out and listed, with the command that makes it, on the closing slide.
Each slide's speaker notes name the files it was built from.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from gpt2chat import settings
from gpt2chat.modeling.rundir import RunDirectory

WIDTH_IN, HEIGHT_IN = 13.333, 7.5  # 16:9
TEAL, INK, GREY = (0x1B, 0x7F, 0x7A), (0x1F, 0x29, 0x37), (0x5B, 0x67, 0x75)
MAX_BULLET_CHARS = 190  # longer bullets are cut at a sentence end: a slide is not a report


@dataclasses.dataclass(frozen=True)
class DeckSources:
    livrables: Path = settings.LIVRABLES_DIR
    model_dir: Path = settings.DEFAULT_MODEL_DIR
    screenshot: Path = settings.HOME / "docs" / "screenshot.png"

    def rel(self, path: Path) -> str:
        """A path as the notes show it: relative to the repository when inside it."""
        try:
            return str(Path(path).resolve().relative_to(settings.HOME))
        except ValueError:
            return str(path)


class Missing(Exception):
    """A section's source is not there: the message says which file and the command that makes it."""


# --- Markdown helpers --------------------------------------------------------------------------------------------

_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
# Bold, italics and code marks; underscores only at word edges, so gpt2_base_en and <US_SSN> keep theirs.
_EMPHASIS = tuple(re.compile(p) for p in (r"\*\*(.+?)\*\*", r"\*(.+?)\*", r"`(.+?)`", r"(?<!\w)__?(.+?)__?(?!\w)"))


def plain(markdown: str) -> str:
    """Markdown inline text as plain text: images dropped, links to their text, emphasis and code marks off."""
    text = _IMAGE.sub("", markdown)
    text = _LINK.sub(r"\1", text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    return " ".join(text.split())


def shorten(text: str, limit: int = MAX_BULLET_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("; "))
    return cut[: end + 1] if end > limit // 3 else cut.rsplit(" ", 1)[0] + "…"


def section(markdown: str, heading: str) -> str:
    """The body of the first section whose heading starts with ``heading``, up to the next heading of its level
    or above; "" when there is none."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"(#+)\s+(.*)", line)
        if match and match.group(2).startswith(heading):
            level, body = len(match.group(1)), []
            for rest in lines[i + 1:]:
                deeper = re.match(r"(#+)\s", rest)
                if deeper and len(deeper.group(1)) <= level:
                    break
                body.append(rest)
            return "\n".join(body)
    return ""


def bullets(markdown: str) -> list[str]:
    """Top-level "- " items, continuation lines joined, as plain text."""
    items: list[str] = []
    for line in markdown.splitlines():
        if line.startswith(("- ", "* ")):
            items.append(line[2:])
        elif items and line.startswith("  ") and line.strip():
            items[-1] += " " + line.strip()
        elif line.startswith("#") and items:
            break  # a subsection: its list is another list
        elif not line.strip() or line.startswith("#"):
            continue
        elif items:
            break  # the list is over
    return [shorten(plain(item)) for item in items]


def paragraphs(markdown: str) -> list[str]:
    """Plain-text paragraphs that are neither tables, images nor headings."""
    blocks = [block.strip() for block in re.split(r"\n\s*\n", markdown)]
    return [plain(b) for b in blocks if b and not b.startswith(("|", "#", "!", "- ", "* ", "```"))]


def _read(path: Path, command: str) -> str:
    if not path.is_file():
        raise Missing(f"{path.name} not found ({command})")
    return path.read_text(encoding="utf-8")


# --- the deck ----------------------------------------------------------------------------------------------------

class Deck:
    """A 16:9 python-pptx presentation with the few slide shapes this deck uses."""

    def __init__(self):
        from pptx import Presentation
        from pptx.util import Inches

        self.presentation = Presentation()
        self.presentation.slide_width, self.presentation.slide_height = Inches(WIDTH_IN), Inches(HEIGHT_IN)
        self._blank = self.presentation.slide_layouts[6]

    def slide(self, title: str, notes: str, subtitle: str = ""):
        from pptx.dml.color import RGBColor
        from pptx.util import Inches

        slide = self.presentation.slides.add_slide(self._blank)
        bar = slide.shapes.add_shape(1, 0, 0, self.presentation.slide_width, Inches(0.12))  # 1: rectangle
        bar.fill.solid()
        bar.fill.fore_color.rgb = RGBColor(*TEAL)
        bar.line.fill.background()
        self.text(slide, [title], 0.5, 0.3, WIDTH_IN - 1, 0.8, size=30, bold=True, color=TEAL)
        if subtitle:
            self.text(slide, [subtitle], 0.5, 1.0, WIDTH_IN - 1, 0.5, size=15, color=GREY)
        slide.notes_slide.notes_text_frame.text = notes
        return slide

    def text(self, slide, lines: Sequence[str], left, top, width, height, *, size=18, bold=False, color=INK,
             bulleted=False):
        from pptx.dml.color import RGBColor
        from pptx.util import Inches, Pt

        frame = slide.shapes.add_textbox(Inches(left), Inches(top), Inches(width), Inches(height)).text_frame
        frame.word_wrap = True
        for i, line in enumerate(lines):
            paragraph = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
            paragraph.text = f"•  {line}" if bulleted else line
            paragraph.space_after = Pt(8 if bulleted else 4)
            for run in paragraph.runs:
                run.font.size, run.font.bold, run.font.color.rgb = Pt(size), bold, RGBColor(*color)
        return frame

    def picture(self, slide, image, left, top, width, height):
        """The image scaled to fit the box (aspect kept), centred in it; ``image`` is a path or PNG bytes."""
        from PIL import Image
        from pptx.util import Inches

        source = io.BytesIO(image) if isinstance(image, bytes) else image
        with Image.open(source) as opened:
            pixels_w, pixels_h = opened.size
        scale = min(width / pixels_w, height / pixels_h)
        w, h = pixels_w * scale, pixels_h * scale
        if isinstance(source, io.BytesIO):
            source.seek(0)
        return slide.shapes.add_picture(source if isinstance(source, io.BytesIO) else str(source),
                                        Inches(left + (width - w) / 2), Inches(top + (height - h) / 2),
                                        Inches(w), Inches(h))

    def table(self, slide, header: Sequence[str], rows: Sequence[Sequence[str]], left, top, width, *, size=12):
        from pptx.util import Inches, Pt

        shape = slide.shapes.add_table(len(rows) + 1, len(header), Inches(left), Inches(top), Inches(width),
                                       Inches(0.4 * (len(rows) + 1)))
        for r, values in enumerate([header, *rows]):
            for c, value in enumerate(values):
                cell = shape.table.cell(r, c)
                cell.text = str(value)
                for paragraph in cell.text_frame.paragraphs:
                    for run in paragraph.runs:
                        run.font.size = Pt(size)
        return shape

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + ".partial")
        self.presentation.save(str(staging))
        staging.replace(path)
        return path


# --- sections: each adds its slides and returns the files it read, or raises Missing -----------------------------

def title_slides(deck: Deck, sources: DeckSources) -> list[str]:
    slide = deck.slide("gpt2chat", "Title slide.",
                       subtitle=f"Built by python -m gpt2chat.slides on {dt.date.today().isoformat()}")
    deck.text(slide, ["A GPT-2 medical question-answering chatbot",
                      "trained on NIH MedQuAD, grounded in the passages it cites, with personal details removed "
                      "before the model sees a message"], 0.5, 2.6, WIDTH_IN - 1, 2.5, size=26, color=INK)
    slide = deck.slide("The problem", "Why the project exists; the course brief it answers.")
    deck.text(slide, [
        "People ask health questions online; general chatbots answer fluently, without sources, and keep "
        "whatever personal details were typed in.",
        "Goal: a small open chatbot that answers from NIH question-answer pairs, links to the NIH page behind "
        "each answer, says when a question needs a doctor or an emergency number, and masks personal data first.",
        "The course brief: train a GPT-2 with Keras-Hub, compare it with a generic model, deploy it as an app, "
        "test it with users and adjust the model.",
    ], 0.5, 1.5, WIDTH_IN - 1, 5, size=20, bulleted=True)
    return []


def data_slides(deck: Deck, sources: DeckSources) -> list[str]:
    eda = sources.livrables / "eda"
    readme = _read(eda / "README.md", "python -m gpt2chat.eda")
    intro = paragraphs(readme.split("\n## ", 1)[0])[1:]  # the first paragraph says how the file was generated
    used = [eda / "README.md"]
    slide = deck.slide("The data: MedQuAD", f"Numbers from {sources.rel(eda / 'README.md')}.",
                       subtitle="NIH question-answer pairs (CC BY 4.0), read from the XML as published")
    deck.text(slide, intro, 0.5, 1.6, 5.2, 5, size=18, bulleted=True)
    if (eda / "sources.png").is_file():
        deck.picture(slide, eda / "sources.png", 5.9, 1.5, 7.0, 5.7)
        used.append(eda / "sources.png")
    for title, names in (("Question types and topics", ("question_types.png", "top_foci.png")),
                         ("Vocabulary of questions and answers", ("wordcloud_questions.png", "wordcloud_answers.png")),
                         ("Answer lengths and the model's context", ("lengths.png",))):
        present = [eda / name for name in names if (eda / name).is_file()]
        if not present:
            continue
        slide = deck.slide(title, "Figures from " + ", ".join(sources.rel(p) for p in present) + ".")
        width = (WIDTH_IN - 1) / len(present)
        for i, path in enumerate(present):
            deck.picture(slide, path, 0.5 + i * width, 1.3, width - 0.2, 5.9)
        used += present
    # Any other figure the EDA writes gets its own slide, titled by its caption in the EDA summary.
    captions = {Path(target).name: alt for alt, target in re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", readme)}
    for path in sorted(set(eda.glob("*.png")) - set(used)):
        slide = deck.slide(captions.get(path.name, path.stem.replace("_", " ")).capitalize(),
                           f"Figure from {sources.rel(path)}.")
        deck.picture(slide, path, 0.5, 1.3, WIDTH_IN - 1, 5.9)
        used.append(path)
    return [sources.rel(p) for p in used]


def training_curve_png(history: Sequence[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [entry["step"] for entry in history]
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    axis.plot(steps, [entry["val_perplexity"] for entry in history], "o-", color="#1b7f7a", label="validation")
    if all("train_loss" in entry for entry in history):
        from gpt2chat.modeling.rundir import perplexity

        axis.plot(steps, [perplexity(entry["train_loss"]) for entry in history], "s--", color="#3a7bc8",
                  label="training")
    axis.set_yscale("log")
    axis.set_xlabel("training step")
    axis.set_ylabel("perplexity (log scale)")
    axis.set_title("Training curve")
    axis.legend(frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(figure)
    return buffer.getvalue()


def model_slides(deck: Deck, sources: DeckSources) -> list[str]:
    run = RunDirectory(sources.model_dir)
    metrics = run.read_metrics()
    if not metrics or not metrics.get("history"):
        raise Missing(f"{sources.rel(run.metrics)} not found (python -m gpt2chat.train)")
    config = run.training_config() or {}
    origin = (f"fine-tuned from {config['preset']}" if config.get("preset")
              else f"size {config.get('size', '?')}, from scratch")
    lines = [f"GPT-2 architecture ({origin}), {metrics['parameters']:,} parameters",
             f"{metrics['tokens_seen']:,} training tokens seen"
             + (f": {config['steps']} steps of {config['batch_size']} × {config['sequence_length']} tokens"
                if {"steps", "batch_size", "sequence_length"} <= set(config) else ""),
             f"best validation perplexity {metrics['best_val_perplexity']:,.1f} (loss {metrics['best_val_loss']:.2f}) "
             f"at step {metrics['best_step']}",
             f"median training throughput {metrics['median_tokens_per_second']:,.0f} tokens/s "
             f"({metrics.get('backend', '?')} backend)"]
    if config.get("lora_rank"):
        lines.append(f"LoRA rank {config['lora_rank']}")
    slide = deck.slide("The model and its training", f"From {sources.rel(run.metrics)} and "
                       f"{sources.rel(run.config)}.", subtitle="Keras-Hub GPT2CausalLM with the GPT-2 BPE vocabulary")
    deck.text(slide, lines, 0.5, 1.6, 5.4, 5, size=18, bulleted=True)
    deck.picture(slide, training_curve_png(metrics["history"]), 6.1, 1.4, 6.8, 5.8)
    return [sources.rel(run.metrics), sources.rel(run.config)]


def conclusion_slide(deck: Deck, result: dict, source: str) -> None:
    """The report's conclusion paragraph and its perplexity table on both domains, when the comparison measured
    them (reports written before the generic baseline did not)."""
    from gpt2chat.reports.report import DOMAINS, comparison_conclusion, domain_frame

    frame = domain_frame(result)
    if frame.empty:
        return
    slide = deck.slide("Generic vs specialised: what the numbers say", f"Conclusion and table from {source}.",
                       subtitle="perplexity, lower is better")
    deck.text(slide, [plain(comparison_conclusion(result))], 0.5, 1.5, WIDTH_IN - 1, 2.8, size=14)
    columns = [c for c in DOMAINS.values() if c in frame.columns]
    rows = [[row["model"], *("—" if row[c] != row[c] else f"{row[c]:,.1f}" for c in columns)]
            for row in frame.to_dict("records")]
    deck.table(slide, ["model", *columns], rows, 0.5, 4.5, WIDTH_IN - 1, size=12)


def comparison_slides(deck: Deck, sources: DeckSources) -> list[str]:
    path = sources.livrables / "comparison.json"
    result = json.loads(_read(path, "python -m gpt2chat.compare"))
    modes = result.get("grounding_modes", {})
    rows = []
    for label, measured in result.get("results", {}).items():
        ppl = (measured.get("perplexity") or {}).get("perplexity")
        for mode, answers in measured.get("modes", {}).items():
            metrics, latency = answers.get("metrics", {}), answers.get("latency", {})
            rows.append([label, modes.get(mode, {}).get("label", mode), f"{ppl:,.0f}" if ppl else "—",
                         *(f"{metrics[m]:.1f}" if m in metrics else "—" for m in ("rougeL", "token_f1")),
                         f"{latency['seconds_per_answer']:.2f}" if "seconds_per_answer" in latency else "—"])
    if not rows:
        raise Missing(f"{path.name} has no results (python -m gpt2chat.compare)")
    test = result.get("test_set", {})
    conclusion_slide(deck, result, sources.rel(path))
    slide = deck.slide("Generic vs specialised: the comparison", f"From {sources.rel(path)}; command: "
                       f"{result.get('command', '?')}.", subtitle=f"{test.get('questions', '?')} held-out test "
                       f"questions (of {test.get('test_pairs', '?')} test pairs); ROUGE-L and token F1 in %")
    deck.table(slide, ["model", "grounding", "test perplexity", "ROUGE-L", "token F1", "s/answer"], rows,
               0.5, 1.6, WIDTH_IN - 1, size=12)
    notes = [shorten(plain(note)) for note in result.get("notes", [])]
    judge = result.get("judge", {})
    if judge.get("note"):
        notes.append(shorten(plain(judge["note"])))
    if notes:
        deck.text(slide, notes, 0.5, 1.9 + 0.4 * (len(rows) + 1), WIDTH_IN - 1, 2, size=13, color=GREY,
                  bulleted=True)
    used = [path]
    order = {"quality": 0, "perplexity": 1, "latency": 2}  # the answer first, then its cost
    charts = sorted(sources.livrables.glob("comparison_*.png"),
                    key=lambda p: (order.get(p.stem.removeprefix("comparison_"), len(order)), p.name))
    for chart in charts:
        slide = deck.slide("Comparison: " + chart.stem.removeprefix("comparison_").replace("_", " "),
                           f"Chart from {sources.rel(chart)}.")
        deck.picture(slide, chart, 0.5, 1.3, WIDTH_IN - 1, 5.9)
    return [sources.rel(p) for p in used + charts]


def optimisation_slides(deck: Deck, sources: DeckSources) -> list[str]:
    path = sources.livrables / "optimisation.md"
    text = _read(path, "the optimisation report")
    heading = re.search(r"^#\s+(.*)$", text, re.MULTILINE)
    body = text[heading.end():] if heading else text
    lines = (bullets(body) or [shorten(p) for p in paragraphs(body)])[:7]
    images = [path.parent / target for target in _IMAGE.findall(text) if (path.parent / target).is_file()][:2]
    slide = deck.slide(plain(heading.group(1)) if heading else "Optimisation", f"From {sources.rel(path)}.")
    deck.text(slide, lines, 0.5, 1.4, 6.0 if images else WIDTH_IN - 1, 5.6, size=16, bulleted=True)
    for i, image in enumerate(images):
        deck.picture(slide, image, 6.8, 1.4 + i * 2.9, 6.0, 2.8 if len(images) > 1 else 5.6)
    return [sources.rel(p) for p in [path, *images]]


def app_slides(deck: Deck, sources: DeckSources) -> list[str]:
    if not sources.screenshot.is_file():
        raise Missing(f"{sources.rel(sources.screenshot)} not found "
                      "(GPT2CHAT_SCREENSHOT=docs/screenshot.png pytest tests/test_browser.py)")
    slide = deck.slide("The app", f"Screenshot {sources.rel(sources.screenshot)}, taken by the browser test.",
                       subtitle="python app.py: a streaming Gradio chat and API, deployable as a Hugging Face Space")
    deck.picture(slide, sources.screenshot, 0.5, 1.5, WIDTH_IN - 1, 5.8)
    return [sources.rel(sources.screenshot)]


def privacy_slides(deck: Deck, sources: DeckSources) -> list[str]:
    path = sources.livrables / "data_and_legal.md"
    text = _read(path, "the data and legal notes")
    does, does_not = bullets(section(text, "4. Privacy")), bullets(section(text, "What the masking does NOT"))
    if not does:
        raise Missing(f"{path.name} has no privacy section")
    slide = deck.slide("Privacy and safety", f"From {sources.rel(path)}, sections 4 and 5.",
                       subtitle="Masking happens before retrieval, the prompt, the model, logs and feedback")
    deck.text(slide, ["What the masking does"], 0.5, 1.5, 6.0, 0.5, size=18, bold=True, color=TEAL)
    deck.text(slide, does, 0.5, 2.0, 6.0, 5.2, size=13, bulleted=True)
    deck.text(slide, ["What it does not guarantee"], 6.8, 1.5, 6.0, 0.5, size=18, bold=True, color=TEAL)
    deck.text(slide, does_not, 6.8, 2.0, 6.0, 5.2, size=13, bulleted=True)
    return [sources.rel(path)]


def feedback_slides(deck: Deck, sources: DeckSources) -> list[str]:
    path = sources.livrables / "feedback.md"
    text = _read(path, "python -m gpt2chat.feedback report")
    summary = [p for p in paragraphs(text) if "ratings" in p and "thumbs up" in p]
    if not summary:
        raise Missing(f"{path.name} has no ratings yet (users rate answers in the app)")
    figures = [path.parent / "feedback" / name for name in ("over_time.png", "approval_question_types.png")]
    figures = [f for f in figures if f.is_file()]
    slide = deck.slide("What users said", f"From {sources.rel(path)}.", subtitle=summary[0])
    width = (WIDTH_IN - 1) / max(len(figures), 1)
    for i, figure in enumerate(figures):
        deck.picture(slide, figure, 0.5 + i * width, 1.7, width - 0.2, 5.5)
    return [sources.rel(p) for p in [path, *figures]]


def limits_slides(deck: Deck, sources: DeckSources) -> list[str]:
    path = sources.livrables / "data_and_legal.md"
    limits = bullets(section(_read(path, "the data and legal notes"), "6. Model limitations"))
    if not limits:
        raise Missing(f"{path.name} has no limitations section")
    slide = deck.slide("Limits", f"From {sources.rel(path)}, section 6.")
    deck.text(slide, limits, 0.5, 1.4, WIDTH_IN - 1, 5.8, size=16, bulleted=True)
    return [sources.rel(path)]


SECTIONS: tuple[tuple[str, Callable[[Deck, DeckSources], list[str]]], ...] = (
    ("title", title_slides), ("data", data_slides), ("model", model_slides), ("comparison", comparison_slides),
    ("optimisation", optimisation_slides), ("app", app_slides), ("privacy", privacy_slides),
    ("feedback", feedback_slides), ("limits", limits_slides),
)


@dataclasses.dataclass
class BuildReport:
    path: Path
    slides: int
    used: list[str]
    skipped: list[tuple[str, str]]  # (section, why)


def build(sources: DeckSources, out: Path) -> BuildReport:
    """Every section whose sources exist, then a closing slide listing the sources and what was skipped."""
    deck, used, skipped = Deck(), [], []
    for name, add in SECTIONS:
        try:
            used += add(deck, sources)
        except Missing as missing:
            skipped.append((name, str(missing)))
    slide = deck.slide("Where every number comes from", "Closing slide: the deck's sources.",
                       subtitle="Rebuild with python -m gpt2chat.slides after any report changes")
    lines = list(dict.fromkeys(used)) + [f"not shown — {name}: {why}" for name, why in skipped]
    deck.text(slide, lines, 0.5, 1.6, WIDTH_IN - 1, 5.6, size=13 if len(lines) < 16 else 10, bulleted=True)
    deck.save(out)
    return BuildReport(out, len(deck.presentation.slides), list(dict.fromkeys(used)), skipped)


def main(argv: list[str] | None = None) -> int:
    defaults = DeckSources()
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.slides", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(defaults.livrables / "presentation.pptx"), help="the .pptx to write")
    parser.add_argument("--livrables", default=str(defaults.livrables), help="the generated reports' directory")
    parser.add_argument("--model-dir", default=str(defaults.model_dir), help="training run to show (metrics.json)")
    parser.add_argument("--screenshot", default=str(defaults.screenshot), help="the app screenshot")
    args = parser.parse_args(argv)
    sources = DeckSources(Path(args.livrables), Path(args.model_dir), Path(args.screenshot))
    if not sources.livrables.is_dir():
        print(f"error: no livrables directory at {sources.livrables}", file=sys.stderr)
        return 2
    report = build(sources, Path(args.out))
    for name, why in report.skipped:
        print(f"skipped {name}: {why}")
    size = report.path.stat().st_size
    print(f"wrote {report.path} ({report.slides} slides, {size / 1024:,.0f} KiB) from {len(report.used)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
