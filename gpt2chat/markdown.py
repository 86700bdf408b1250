"""Markdown tables, for every report of every stage (the loader's, training sweeps', evaluations', the comparison).
A leaf: it imports nothing of gpt2chat, so any stage may use it."""

from __future__ import annotations

from typing import Callable, Mapping

Format = str | Callable[[object], str]


def markdown_table(frame, formats: Mapping[str, Format] | None = None) -> str:
    """A Markdown (GitHub pipe) table of a DataFrame, through ``DataFrame.to_markdown``.

    ``formats`` maps a column to a format string (``"{:,}"``, ``"{:.1f}%"``) or a function of the cell value;
    missing values show as "–". Numeric columns are right-aligned, others left-aligned. Cells are flattened to
    one line and ``|`` is escaped, so any text (model answers included) stays inside its cell."""
    import pandas as pd

    formats = formats or {}
    cells = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        cells[column] = [_cell(value, formats.get(column)) for value in frame[column]]
    align = ["right" if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
             else "left" for c in frame.columns]
    return cells.to_markdown(index=False, colalign=align, disable_numparse=True)


def _cell(value, fmt: Format | None) -> str:
    import pandas as pd

    if callable(fmt):
        text = fmt(value)
    elif value is None or (not isinstance(value, str) and pd.isna(value)):
        text = "–"
    else:
        text = fmt.format(value) if fmt else str(value)
    return " ".join(str(text).split()).replace("|", "\\|")
