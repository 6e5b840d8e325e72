"""`results/README.md`'s lead (the summary table, the floor check, RILS against each method) and `study.md` (the
same aggregation per dataset), from `report.study`'s cells. Markdown only; numbers are never typed here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from rils_bench.report.study import (
    SUMMARY_SHOTS,
    comparisons,
    floor_check,
    paired_floor_check,
    pooled,
    sort_key,
    summary_cells,
)

SUMMARY_PROTOCOLS = (
    "linear", "kNN", "zero-shot", "i2t R@1", "t2i R@1", "box AP", "mask AP", "mIoU", "seg linear", "seg kNN",
)  # fmt: skip
DETAIL_COLUMNS = ("1-shot", "2-shot", "4-shot", "8-shot", "16-shot", "linear", "kNN", "zero-shot")


def summary_frame(values: dict, datasets: Sequence[str], retrieval: Sequence[str]) -> pd.DataFrame:
    """Long table: one row per (method, column) with mean, std, n — `summary.csv`."""
    rows = [
        {"method": g, "column": c, "mean": cell.mean, "std": cell.std, "n": len(cell.values)}
        for g, row in summary_cells(values, datasets, retrieval).items()
        for c, cell in row.items()
    ]
    return pd.DataFrame(rows, columns=["method", "column", "mean", "std", "n"])


def summary_markdown(values: dict, datasets: Sequence[str], retrieval: Sequence[str]) -> str:
    summary = summary_cells(values, datasets, retrieval)
    order = (*(f"{k}-shot" for k in SUMMARY_SHOTS), *SUMMARY_PROTOCOLS)
    columns = [c for c in order if any(c in row for row in summary.values())]
    return _table(["method", *columns], [[g, *(str(row.get(c, "")) for c in columns)] for g, row in summary.items()])


def lead(values: dict, state: dict[str, Any], retrieval: Sequence[str]) -> str:
    """The README's first sections: budget, summary table, floor check, RILS vs each method."""
    datasets, in_domain = state.get("datasets", []), state.get("in_domain", [])
    budget = state.get("budget", {})
    summary = summary_cells(values, datasets, retrieval)
    parts = [
        "# Results\n",
        "## Summary\n",
        f"The comparison study ({commands(state)}): every method pre-trained on the built-in "
        f"image-text pairs with the same encoder ({budget.get('arch')}, {budget.get('image_size')} px), "
        f"{budget.get('images_seen')} images seen ({budget.get('steps')} steps of {budget.get('batch_size')}), "
        f"pre-training seeds {budget.get('seeds')}, precision {budget.get('precision')}. Each cell: mean ± sample "
        "std (number of values) over pre-training seeds x probe seeds (few-shot) or pre-training seeds (the rest). "
        f"Classification columns are averaged over {', '.join(datasets)}; R@1 over the retrieval sets "
        f"({', '.join(retrieval)}). `random` is a randomly initialised encoder of the same size, `pixels` the "
        "resized, normalised image itself (probes only).\n",
        summary_markdown(values, datasets, retrieval),
        "\n### Do the trained methods beat the floors? (few-shot, in-domain sets)\n",
        "Count of k (of the shots evaluated) at which the method's few-shot mean is above / below the floor's by "
        "more than the two standard deviations together.\n",
    ]
    for floor in ("random", "pixels"):
        rows = floor_check(values, in_domain, floor)
        if rows:
            parts.append(f"Against `{floor}`:\n")
            parts.append(_table(["method", *in_domain], [[r["method"], *(r[d] for d in in_domain)] for r in rows]))
    paired_tables = []
    for floor in ("random", "pixels"):
        for ds, by_method in paired_floor_check(values, in_domain, floor).items():
            columns = list(dict.fromkeys(metric for cells in by_method.values() for metric in cells))
            rows = [[method, *(cells.get(c, "") for c in columns)] for method, cells in by_method.items()]
            paired_tables += [f"Against `{floor}`, paired, {ds}:\n", _table(["method", *columns], rows)]
    if paired_tables:
        parts.append(
            "\nPaired on the same k-shot draws (probe seed s picks the same images for every encoder, so the draw's "
            "luck is shared): the method's top-1 minus the floor's, per pre-training seed x probe seed, mean ± sample "
            "std; `above` / `below` when the mean exceeds the std.\n"
        )
        parts += paired_tables
    lines = comparisons(summary)
    if lines:
        parts.append("\n### RILS against each method (summary columns; difference of means, RILS minus the other)\n")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def detail_markdown(values: dict, datasets: Sequence[str]) -> str:
    """`study.md`: per classification set, one row per method with every k-shot and protocol column, then the
    retrieval subsets and dense sets."""
    parts = ["# Study detail\n", "Cells as in the summary (`README.md`): mean ± sample std (n values), per set.\n"]
    groups = sorted({g for g, _, _ in values}, key=sort_key)
    for ds in sorted({d for _, d, _ in values}):
        present = [c for c in _columns_of(values, ds) if any((g, ds, c) in values for g in groups)]
        rows = [[g, *(str(pooled(values[g, ds, c])) if (g, ds, c) in values else "" for c in present)]
                for g in groups if any((g, ds, c) in values for c in present)]  # fmt: skip
        parts.append(f"## {ds}{' (in the summary)' if ds in datasets else ''}\n\n" + _table(["method", *present], rows))
    return "\n".join(parts)


def commands(state: dict[str, Any]) -> str:
    """The study commands that filled these results, in order."""
    return " then ".join(f"`{c}`" for c in state.get("commands", ["make study"]))


def _columns_of(values: dict, dataset: str) -> list[str]:
    metrics = {m for _, d, m in values if d == dataset}
    ordered = [c for c in DETAIL_COLUMNS if c in metrics]
    return ordered + sorted(metrics - set(ordered))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "_no records yet_\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
