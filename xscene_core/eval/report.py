"""Printing and recording measurement results: one table on stdout, a flat JSON object (--json) and a
section of BENCHMARKS.md (each command owns one section, replaced on every run)."""

from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"
TITLE = "# Benchmarks\n\nWritten by `python -m xscene_core.eval.bench` and `python -m xscene_core.eval.quality`; do not edit by hand.\n"


@dataclass(frozen=True)
class Row:
    """One measured figure: stable key, value, unit, target text ("" if none) and a note."""

    key: str
    value: float
    unit: str
    target: str = ""
    note: str = ""


def print_figures(figures: dict, json_path: Path | None = None) -> None:
    """A measuring command's figures: printed as JSON and, with a path, written there too."""
    text = json.dumps(figures, indent=1)
    print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def table(rows: list[Row], when: str = "") -> str:
    """Markdown table of `rows`, each stamped `when` (its measurement time) in the last column."""
    lines = ["| key | value | target | note | measured |", "|---|---|---|---|---|"]
    for r in rows:
        v = f"{r.value:.4g}" if isinstance(r.value, float) else str(r.value)
        lines.append(f"| `{r.key}` | {v} {r.unit} | {r.target} | {r.note} | {when} |")
    return "\n".join(lines)


def _merged(old_block: str, rows: list[Row], when: str = "") -> str:
    """The table of `rows` (measured `when`) with the rows of an earlier table (text) whose keys `rows`
    does not measure kept in their place, with their own times (rows of a table from before the time
    column get "by" its header's "Measured ..." time: that of its latest run, partial or not)."""
    new = {r.key: line for r, line in zip(rows, table(rows, when).splitlines()[2:])}
    header_time = re.search(r"Measured (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", old_block)
    lines, seen = [], set()
    for line in old_block.splitlines():
        if line.startswith("| `"):
            key = line.split("`")[1]
            if key not in new and line.count(" | ") == 3:  # a row of the four-column table
                line += f" by {header_time.group(1)} |" if header_time else "  |"
            lines.append(new.get(key, line))
            seen.add(key)
    lines += [line for key, line in new.items() if key not in seen]
    return "\n".join(table([]).splitlines()[:2] + lines)


def publish(section: str, rows: list[Row], json_path: Path | None, write_markdown: bool = True, preamble: str = "",
            merge: bool = False) -> None:
    """Print the table, write the JSON object {key: value} and replace `section` in BENCHMARKS.md (with
    `merge`, only the rows measured now are replaced; the section's other rows stay, each with the time it
    was measured)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = table(rows, when)
    print(body)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({r.key: r.value for r in rows}, indent=1))
    if not write_markdown:
        return
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else TITLE
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if merge and start in text and end in text:
        body = _merged(text[text.index(start):text.index(end)], rows, when)
    block = (f"{start}\n## {section}\n\n{preamble}Measured on {machine()}; the last column gives the time of each "
             f"row (a partial run re-measures only its rows).\n\n{body}\n{end}")
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)
