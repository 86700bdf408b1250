"""The report helpers: Markdown tables from DataFrames and HTML rendered from the Markdown."""

from __future__ import annotations

import pandas as pd

from gpt2chat.markdown import markdown_table
from gpt2chat.reports.report import markdown_to_html


def test_markdown_table_formats_aligns_and_escapes():
    frame = pd.DataFrame({"model": ["a | b", "multi\nline  text"], "pairs": [4524, None], "share": [27.63, 0.04]})
    lines = markdown_table(frame, {"pairs": "{:,.0f}", "share": "{:.1f}%"}).splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("|:") and lines[1].endswith(":|")  # text left, numbers right
    cells = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    assert cells[0] == ["model", "pairs", "share"]
    assert cells[2] == ["a \\| b", "4,524", "27.6%"]
    assert cells[3] == ["multi line text", "–", "0.0%"]


def test_html_has_tables_inline_markup_and_escapes_raw_html(tmp_path):
    (tmp_path / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    table = markdown_table(pd.DataFrame({"answer": ["<script>alert(1)</script> a | b"], "n": [1]}))
    markdown = f"# Title\n\nSome `code`, **bold** and _italics_.\n\n{table}\n\n![a chart](chart.png)\n"
    page = markdown_to_html(markdown, "A <report>", image_dir=tmp_path)
    assert page.startswith("<!DOCTYPE html>") and "<title>A &lt;report&gt;</title>" in page
    assert "<h1>Title</h1>" in page and "<code>code</code>" in page
    assert "<strong>bold</strong>" in page and "<em>italics</em>" in page
    assert "<table>" in page and "<td" in page and "a | b</td>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page and 'alt="a chart"' in page


def test_missing_image_keeps_its_link(tmp_path):
    page = markdown_to_html("![gone](missing.png)", "t", image_dir=tmp_path)
    assert 'src="missing.png"' in page
