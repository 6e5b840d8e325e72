"""Plots built from the result tables: matplotlib's object API on the Agg canvas (no pyplot, no global backend)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rils_bench.fileio import atomic_write


def series_label(row: pd.Series) -> str:
    """Legend entry of one encoder: `method arch (N steps, id)` (`random arch` for a random encoder), plus the
    feature when it is not `gap` and the text tower when it is not the CLIP one."""
    feature = "" if row["feature"] == "gap" else f", {row['feature']}"
    feature += "" if row.get("text", "clip") in ("clip", "none") else f", text {row['text']}"
    if str(row["checkpoint"]).startswith("random:"):
        return f"random {row['arch']}" + (f" ({row['feature']})" if feature else "")
    return f"{row['method']} {row['arch']} ({row['steps']} steps, {row['checkpoint']}{feature})"


def fewshot_plot(frame: pd.DataFrame, path: Path) -> Path:
    """`path` (PNG): top-1 vs shots (log2 axis), one panel per dataset, one line per encoder, error bars = std.

    `frame` is `tables.fewshot_frame(...)`. Without rows the figure says so. PNG metadata carries no software
    version, so the same frame gives the same bytes on the same matplotlib.
    """
    datasets = sorted(frame["dataset"].unique()) if not frame.empty else []
    fig = Figure(figsize=(5.5 * max(1, len(datasets)), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(datasets)), squeeze=False)[0]
    if not datasets:
        axes[0].text(0.5, 0.5, "no few-shot records yet", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, dataset in zip(axes, datasets, strict=False):
        rows = frame[frame["dataset"] == dataset]
        for _, line in rows.groupby(["method", "arch", "text", "steps", "checkpoint", "feature"], sort=True):
            line = line.sort_values("shots")
            ax.errorbar(
                line["shots"],
                line["top1_mean"],
                yerr=line["top1_std"],
                marker="o",
                capsize=3,
                label=series_label(line.iloc[0]),
            )
        shots = sorted(rows["shots"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set(title=dataset, xlabel="training images per class (k)", ylabel="top-1 (%), mean ± std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    return path
