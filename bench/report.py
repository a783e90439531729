"""Benchmark results as data: one `Row` per figure, its verdict against the goal, and the Markdown table.

Every bench module returns rows; its own CLI and `bench/run` render the same rows,
so no number is ever read back from printed text.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Row", "add_output_args", "emit", "load_rows", "quantile", "render_table"]


def quantile(values: list[float], q: float) -> float:
    """The `q` quantile by nearest rank (the median for 0.5, interpolated like statistics.median)."""
    if q == 0.5:
        return statistics.median(values)
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Row:
    """One measured figure.

    `limit` is the goal as a number, compared with the figure's statistic (the median,
    or the `q` quantile) or, with `goal_on="ratio"`, with median(samples) / median(baseline).
    A row whose side check failed (`failed` says what) misses whatever its numbers say.
    """

    figure: str
    goal: str
    samples: list[float]
    unit: str
    better: Literal["lower", "higher"] = "lower"
    limit: float | None = None
    goal_on: Literal["value", "ratio"] = "value"
    baseline: list[float] | None = None
    baseline_name: str = ""
    q: float = 0.5
    note: str = ""
    failed: str = ""
    source: str = ""

    def value(self) -> float | None:
        return quantile(self.samples, self.q) if self.samples else None

    def ratio(self) -> float | None:
        if not self.samples or not self.baseline:
            return None
        base = statistics.median(self.baseline)
        return statistics.median(self.samples) / base if base > 0 else None

    def verdict(self) -> str:
        if not self.samples:
            return "skipped"
        if self.failed:
            return "misses"
        if self.limit is None:
            return "—"
        measured = self.ratio() if self.goal_on == "ratio" else self.value()
        if measured is None:
            return "—"
        ok = measured <= self.limit if self.better == "lower" else measured >= self.limit
        return "meets" if ok else "misses"


def number(value: float) -> str:
    """A figure to about three significant digits; whole numbers stay whole."""
    size = abs(value)
    if value == int(value):
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _with_unit(text: str, unit: str) -> str:
    if not unit:
        return text
    return f"{text}{unit}" if unit.startswith("/") or unit == "×" else f"{text} {unit}"


def _cells(row: Row) -> list[str]:
    if not row.samples:
        return ["—", "—", "0", "—", "skipped", row.note or row.failed]
    stat = number(row.value())
    if row.q != 0.5:
        stat = f"p{round(row.q * 100)} {stat}"
    low, high = number(min(row.samples)), number(max(row.samples))
    spread = f"{low} – {high}" if low.startswith("-") else f"{low}–{high}"
    ratio = row.ratio()
    ratio_text = "—"
    if ratio is not None:
        base = _with_unit(number(statistics.median(row.baseline)), row.unit)
        ratio_text = f"{ratio:.2f}× {row.baseline_name} ({base})"
    verdict = row.verdict()
    notes = "; ".join(part for part in (row.failed, row.note) if part)
    return [_with_unit(stat, row.unit), spread, str(len(row.samples)), ratio_text, verdict, notes]


def render_table(rows: list[Row], with_source: bool = False) -> str:
    """The rows as one Markdown table."""
    head = ["figure", "goal", "measured", "min–max", "n", "ratio", "verdict", "notes"]
    if with_source:
        head.insert(0, "bench")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        cells = [row.figure, row.goal, *_cells(row)]
        if with_source:
            cells.insert(0, row.source)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, help="write the rows as JSON to this file instead of a table")


def emit(rows: list[Row], args: argparse.Namespace, source: str, intro: str = "") -> None:
    """A bench CLI's output: the table on stdout, or the rows as JSON for `bench/run`."""
    for row in rows:
        row.source = row.source or source
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows]))
        return
    if intro:
        print(intro + "\n")
    print(render_table(rows))


def load_rows(path: Path) -> list[Row]:
    return [Row(**item) for item in json.loads(path.read_text())]
