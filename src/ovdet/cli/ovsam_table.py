"""Open-Vocabulary SAM's table on the terminal (shared by `ovdet eval-ovsam` and the shapes
world's commands)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_ovsam_table(rows: list[dict[str, Any]], title: str) -> None:
    """Top-1 name (all / base / novel) and mask mIoU per (prompt, method) row."""
    table = Table(title=f"{title}: top-1 name and mask IoU per GT object")
    columns = ("acc all", "acc base", "acc novel", "mIoU", "mIoU base", "mIoU novel")
    for col in ("prompt", "method"):
        table.add_column(col, no_wrap=True)
    for col in columns:
        table.add_column(col)
    for r in rows:
        cells = [_percent(r[k]) for k in ("all", "base", "novel")]
        cells += [
            "-" if r.get(k) is None else f"{r[k]:.3f}" for k in ("mIoU", "mIoU_base", "mIoU_novel")
        ]
        table.add_row(r["prompt"], r["method"], *cells)
    Console().print(table)


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"
