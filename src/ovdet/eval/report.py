"""Evaluation output for people: a terminal table and a picture (PR curves, AP per group)."""

from __future__ import annotations

import os

import numpy as np
from rich.table import Table

from ovdet.eval.detection import EvalResult
from ovdet.io.atomic import atomic_path

GROUP_COLOURS = {
    "all": "#333333",
    "r": "#d62728",
    "c": "#ff7f0e",
    "f": "#1f77b4",
    "base": "#2ca02c",
    "novel": "#9467bd",
}


def metrics_table(result: EvalResult, title: str | None = None) -> Table:
    """The metrics (AP, AP50, ..., APr/c/f, base/novel) as a rich Table, three pairs per row."""
    table = Table(title=title or f"{result.protocol.upper()} {result.iou_type} AP")
    for _ in range(3):
        table.add_column("metric")
        table.add_column("value", justify="right")
    cells = [(k, f"{v:.1f}" if v > -1 else "-") for k, v in result.metrics.items()]
    for i in range(0, len(cells), 3):
        row = [x for pair in cells[i : i + 3] for x in pair]
        table.add_row(*row, *[""] * (6 - len(row)))
    return table


def _groups(result: EvalResult) -> dict[str, list[int]]:
    """Group name -> indices into `result.precision`'s category axis."""
    index = {cid: k for k, cid in enumerate(result.category_ids)}
    groups: dict[str, list[int]] = {"all": list(range(len(result.category_ids)))}
    for row in result.per_category:
        for key in ("frequency", "group"):
            if row.get(key):
                groups.setdefault(row[key], []).append(index[row["id"]])
    return groups


def mean_pr_curve(precision: np.ndarray, categories: list[int]) -> np.ndarray:
    """(T, R, K) precision -> (R,) mean over the given categories and the T thresholds,
    counting only categories with ground truth."""
    p = precision[:, :, categories]
    valid = (p > -1).all(axis=(0, 1))
    if not valid.any():
        return np.full(p.shape[1], np.nan)
    return p[:, :, valid].mean(axis=(0, 2))


def save_plots(result: EvalResult, path: str | os.PathLike) -> None:
    """PNG with precision-recall curves (IoU 0.5 and 0.5:0.95) per group and a bar chart of AP."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax50, ax_all, ax_bar = fig.subplots(1, 3)
    i50 = int(np.argmin(np.abs(result.iou_thresholds - 0.5)))
    groups = _groups(result)
    for name, cats in groups.items():
        colour = GROUP_COLOURS.get(name, None)
        ax50.plot(
            result.recall_points,
            mean_pr_curve(result.precision[i50 : i50 + 1], cats),
            label=name,
            color=colour,
        )
        ax_all.plot(
            result.recall_points, mean_pr_curve(result.precision, cats), label=name, color=colour
        )
    for ax, title in ((ax50, "IoU 0.5"), (ax_all, "IoU 0.5:0.95")):
        ax.set(
            xlabel="recall",
            ylabel="precision",
            title=f"mean PR curve, {title}",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    bars = {
        k: v
        for k, v in result.metrics.items()
        if k
        in ("AP", "APr", "APc", "APf", "AP_base", "AP_novel", "AP50", "AP50_base", "AP50_novel")
    }
    names = list(bars)
    ax_bar.bar(names, [max(v, 0) for v in bars.values()], color="#4c72b0")
    for i, v in enumerate(bars.values()):
        ax_bar.text(i, max(v, 0) + 0.5, f"{v:.1f}" if v > -1 else "-", ha="center", fontsize=8)
    ax_bar.set(title=f"{result.protocol.upper()} {result.iou_type} AP by group", ylim=(0, 105))
    ax_bar.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def save_method_bars(results: dict[str, dict[str, float]], path: str | os.PathLike) -> None:
    """PNG of a reproduction table: AP and AP_r (novel) bars per method, and s/image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results)
    fig = Figure(figsize=(12, 0.42 * len(names) + 1.2), dpi=110)
    FigureCanvasAgg(fig)
    ax, ax_time = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
    y = np.arange(len(names))
    for offset, key, colour in ((-0.2, "AP", "#4c72b0"), (0.2, "APr", "#dd8452")):
        values = [results[n].get(key, 0.0) for n in names]
        ax.barh(y + offset, values, height=0.4, color=colour, label=key)
        for yi, v in zip(y, values, strict=True):
            ax.text(v + 0.5, yi + offset, f"{v:.1f}", va="center", fontsize=7)
    ax.set_yticks(y, [n if len(n) < 60 else n[:57] + "..." for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 105), xlabel="AP (LVIS protocol); APr = novel categories")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax_time.barh(y, [results[n].get("s_per_image", 0.0) for n in names], color="#55a868")
    ax_time.set(xlabel="seconds per image")
    ax_time.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
