"""Plots built from the result tables: matplotlib's object API on the Agg canvas (no pyplot, no global backend)."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rils_bench.fileio import atomic_write


def fewshot_plot(values: dict, path: Path) -> Path:
    """`path` (PNG): few-shot top-1 vs k (log2 axis), one panel per dataset, one line per method (its checkpoints
    of every pre-training seed pooled), error bars = std. `values` is `report.study.values_by_checkpoint(...)`.
    PNG metadata carries no software version, so the same records give the same bytes on the same matplotlib."""
    from rils_bench.report.study import pooled, shots_of, sort_key

    shots = defaultdict(dict)  # dataset -> group -> {k: cell}
    for (group, dataset, metric), by_ckpt in values.items():
        if shots_of(metric):
            shots[dataset].setdefault(group, {})[shots_of(metric)] = pooled(by_ckpt)
    datasets = sorted(shots)
    fig, axes = _figure(len(datasets))
    if not datasets:
        _empty(axes[0], "no few-shot records yet")
    for ax, dataset in zip(axes, datasets, strict=False):
        for group in sorted(shots[dataset], key=sort_key):
            cells = shots[dataset][group]
            ks = sorted(cells)
            style = {"linestyle": "--"} if group in ("random", "pixels") else {}
            ax.errorbar(ks, [cells[k].mean for k in ks], yerr=[cells[k].std for k in ks], marker="o", capsize=3,
                        label=group, **style)  # fmt: skip
        ks = sorted({k for cells in shots[dataset].values() for k in cells})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set(title=dataset, xlabel="training images per class (k)", ylabel="top-1 (%), mean ± std")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def pretrain_curves_plot(curves: dict[str, list[dict[str, list[float]]]], path: Path) -> Path:
    """`path` (PNG): every logged loss term against images seen, one panel per term, one line per method (the
    mean over its pre-training seeds; the terms a method does not have are absent). `curves` is
    `report.runs.curves_by_method(...)`."""
    terms = sorted({t for runs in curves.values() for c in runs for t in c if t not in ("step", "images_seen")},
                   key=lambda t: (t != "loss", t))  # fmt: skip
    fig, axes = _figure(len(terms), width=4.2)
    if not terms:
        _empty(axes[0], "no pre-training runs recorded yet")
    for ax, term in zip(axes, terms, strict=False):
        for method in sorted(curves):
            runs = [c for c in curves[method] if term in c and c[term]]
            if not runs:
                continue
            n = min(len(c[term]) for c in runs)
            mean = [sum(c[term][i] for c in runs) / len(runs) for i in range(n)]
            ax.plot(runs[0]["images_seen"][:n], mean, label=f"{method} ({len(runs)} seeds)")
        ax.set(title=term, xlabel="images seen", ylabel="training loss (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _figure(panels: int, width: float = 5.5) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * max(1, panels), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, max(1, panels), squeeze=False)[0])


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    return path
