"""The study's view of the records: one row per method (its checkpoints of every pre-training seed pooled), the
floors beside them, and whether differences exceed seed noise.

Aggregation, everywhere the same: a few-shot cell pools the per-probe-seed top-1 of every checkpoint of the method
(pre-training seeds x probe seeds values); a linear / kNN / zero-shot / retrieval / dense cell pools one value per
checkpoint. Cells are `mean ± sample std (n values)`. The summary averages each checkpoint's (and probe seed's)
value over the classification sets before pooling, so its means are the means of the detail tables' means.

A difference between two methods "exceeds seed noise" when it is larger than the sum of their two standard
deviations (their mean ± std intervals do not overlap): a plain, conservative rule for 2-5 pre-training seeds.

Against a floor, few-shot is also compared *paired*: probe seed s draws the same k-shot images for every encoder
(`eval.fewshot.sample_kshot` depends on the labels, k and s only), so a lucky or unlucky draw moves every encoder
together, and the unpaired rule counts that shared luck twice. The paired difference is taken per (checkpoint,
probe seed) against the floor's value for the same probe seed; it exceeds the noise when its mean is larger than
its own sample std (the mean ± std interval of the differences excludes 0) — the same plain rule.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

FLOOR_METHODS = ("random", "pixels")
SUMMARY_SHOTS = (1, 4, 16)
CLASS_PROTOCOLS = {"linear": "linear", "knn": "kNN", "zeroshot": "zero-shot"}
# (record metric keys, the first present is taken; column): mmdet's CocoMetric names them bbox_AP / segm_AP here.
DENSE_METRICS = {"coco": [(("bbox_AP", "bbox_mAP"), "box AP"), (("segm_AP", "segm_mAP"), "mask AP")],
                 "ade": [(("mIoU",), "mIoU")],
                 "segprobe": [(("mIoU",), "seg linear")], "segknn": [(("mIoU",), "seg kNN")]}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """Pooled values of one (method, metric)."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f} ({len(self.values)})"


def shots_of(metric: str) -> int | None:
    """k of a `k-shot` metric name, else None (`zero-shot` is not a few-shot column)."""
    head, _, tail = metric.partition("-")
    return int(head) if tail == "shot" and head.isdigit() else None


def group_of(record: dict[str, Any]) -> str:
    """The row a record pools into: the method, plus its text tower when it is not the CLIP one trained with it."""
    ckpt = record["checkpoint"]
    text = ckpt.get("text", "clip")
    method = ckpt["method"]
    return method + ("" if text in ("clip", "none") or method in FLOOR_METHODS else f" [{text}]")


def checkpoint_id(record: dict[str, Any]) -> str:
    return record["checkpoint"].get("sha256") or record["checkpoint"]["spec"]


def values_by_checkpoint(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """(group, dataset, metric) -> checkpoint -> its values (probe seeds for few-shot, one value otherwise).

    Metrics: `k-shot`, `linear`, `kNN`, `zero-shot`, `i2t R@1` / `t2i R@1` (dataset = the retrieval subset),
    `box AP` / `mask AP` / `mIoU` / `seg linear` / `seg kNN` (mIoU of the frozen dense probes; dataset = the task).
    Only gap-feature, logistic-regression probes enter.
    """
    out: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(dict)
    for r in records:
        group, ckpt, task, config = group_of(r), checkpoint_id(r), r["task"], r.get("config") or {}
        if task in ("fewshot", "linear", "knn") and config.get("feature", "gap") != "gap":
            continue  # a cls-token probe is another row's question
        if task == "fewshot":
            values = (r.get("per_seed") or {}).get("top1") or [r["metrics"]["top1"]]
            out[group, r["dataset"], f"{int(config['shots'])}-shot"][ckpt] = [float(v) for v in values]
        elif task in CLASS_PROTOCOLS and "SGD" not in config.get("classifier", ""):
            out[group, r["dataset"], CLASS_PROTOCOLS[task]][ckpt] = [float(r["metrics"]["top1"])]
        elif task == "retrieval":
            for direction in ("i2t", "t2i"):
                if f"{direction}_R@1" in r["metrics"]:
                    out[group, r["dataset"], f"{direction} R@1"][ckpt] = [float(r["metrics"][f"{direction}_R@1"])]
        elif task in DENSE_METRICS:
            for keys, label in DENSE_METRICS[task]:
                value = next((r["metrics"][k] for k in keys if r["metrics"].get(k) is not None), None)
                if value is not None:
                    out[group, task, label][ckpt] = [float(value)]
    return dict(out)


def pooled(by_ckpt: dict[str, list[float]]) -> Cell:
    return Cell(tuple(v for ckpt in sorted(by_ckpt) for v in by_ckpt[ckpt]))


def averaged(per_dataset: Sequence[dict[str, list[float]]]) -> Cell | None:
    """Each checkpoint's values (position by position: probe seeds) averaged over the datasets, then pooled; None
    unless every dataset has the same checkpoints and value counts (a partial row would mislead)."""
    if not per_dataset:
        return None
    ckpts = set(per_dataset[0])
    if any(set(d) != ckpts or any(len(d[c]) != len(per_dataset[0][c]) for c in ckpts) for d in per_dataset):
        return None
    return Cell(
        tuple(
            statistics.fmean(d[c][i] for d in per_dataset) for c in sorted(ckpts) for i in range(len(per_dataset[0][c]))
        )
    )


def summary_cells(
    values: dict[tuple[str, str, str], dict[str, list[float]]], datasets: Sequence[str], retrieval: Sequence[str]
) -> dict[str, dict[str, Cell]]:
    """group -> summary column -> cell: k-shot (k in SUMMARY_SHOTS), linear, kNN, zero-shot averaged over
    `datasets`; R@1 averaged over the `retrieval` subsets; dense metrics as they are."""
    groups = sorted({g for g, _, _ in values}, key=sort_key)
    columns = [*(f"{k}-shot" for k in SUMMARY_SHOTS), "linear", "kNN", "zero-shot"]
    out: dict[str, dict[str, Cell]] = {}
    for group in groups:
        row: dict[str, Cell] = {}
        for column, sets in [*((c, datasets) for c in columns), ("i2t R@1", retrieval), ("t2i R@1", retrieval)]:
            parts = [values[group, d, column] for d in sets if (group, d, column) in values]
            cell = averaged(parts) if len(parts) == len(sets) else None
            if cell is not None:
                row[column] = cell
        for task, label in ((task, label) for task, metrics in DENSE_METRICS.items() for _, label in metrics):
            if (group, task, label) in values:
                row[label] = pooled(values[group, task, label])
        out[group] = row
    return out


def sort_key(group: str) -> tuple[int, str]:
    """Trained methods first (RILS leading), then the floors."""
    return (2 if group in FLOOR_METHODS else 0 if group.startswith("rils") else 1, group)


def exceeds_noise(a: Cell, b: Cell) -> bool | None:
    """Whether the means differ by more than the two stds together; None when either has a single value (one run
    says nothing about its noise)."""
    if len(a.values) < 2 or len(b.values) < 2:
        return None
    return abs(a.mean - b.mean) > a.std + b.std


def comparisons(summary: dict[str, dict[str, Cell]], reference: str = "rils") -> list[str]:
    """One line per (other trained method, column): the reference's difference and whether it exceeds the noise."""
    if reference not in summary:
        return []
    lines = []
    for other in [g for g in summary if g != reference]:
        parts = []
        for column, cell in summary[reference].items():
            if column in summary[other]:
                delta = cell.mean - summary[other][column].mean
                beyond = exceeds_noise(cell, summary[other][column])
                flag = {True: "beyond noise", False: "within noise", None: "one run: noise unknown"}[beyond]
                parts.append(f"{column} {delta:+.2f} ({flag})")
        if parts:
            lines.append(f"- {reference} vs {other}: " + "; ".join(parts))
    return lines


def shots_recorded(values: dict[tuple[str, str, str], dict[str, list[float]]], group: str, dataset: str) -> list[int]:
    """The k of every few-shot metric `group` has on `dataset`, ascending."""
    return sorted({k for g, d, m in values if g == group and d == dataset and (k := shots_of(m))})


def floor_check(
    values: dict[tuple[str, str, str], dict[str, list[float]]], datasets: Sequence[str], floor: str
) -> list[dict[str, str]]:
    """Per trained method and in-domain set: at how many k its few-shot mean is above `floor`'s beyond seed noise,
    and at how many below it beyond noise."""
    rows = []
    groups = sorted({g for g, _, _ in values if g not in FLOOR_METHODS}, key=sort_key)
    for group in groups:
        if not any(shots_recorded(values, group, ds) for ds in datasets):
            continue  # no few-shot record at all (e.g. the reference encoder, probed densely only): nothing to count
        row = {"method": group}
        for ds in datasets:
            shots = shots_recorded(values, group, ds)
            above = below = 0
            for k in shots:
                if (floor, ds, f"{k}-shot") not in values:
                    continue
                mine, theirs = pooled(values[group, ds, f"{k}-shot"]), pooled(values[floor, ds, f"{k}-shot"])
                above += mine.mean - theirs.mean > mine.std + theirs.std  # the floor's probe-seed std is its noise
                below += theirs.mean - mine.mean > mine.std + theirs.std
            row[ds] = f"above at {above}/{len(shots)} k, below at {below}/{len(shots)}"
        rows.append(row)
    return rows


def paired_differences(mine: dict[str, list[float]], floor: dict[str, list[float]]) -> Cell | None:
    """(method - floor) per checkpoint of the method and probe seed, paired on the probe seed; None unless the floor
    has one checkpoint with as many probe seeds as each of the method's (nothing to pair otherwise)."""
    if len(floor) != 1:
        return None
    (base,) = floor.values()
    if any(len(values) != len(base) for values in mine.values()):
        return None
    return Cell(tuple(v - b for ckpt in sorted(mine) for v, b in zip(mine[ckpt], base, strict=True)))


def paired_floor_check(
    values: dict[tuple[str, str, str], dict[str, list[float]]], datasets: Sequence[str], floor: str
) -> dict[str, dict[str, dict[str, str]]]:
    """in-domain set -> trained method -> `k-shot` -> its paired few-shot difference with `floor`, as
    `"+8.0 ± 5.1 above"` (`below`, or nothing when within the noise); shots with nothing to pair are left out."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    groups = sorted({g for g, _, _ in values if g not in FLOOR_METHODS}, key=sort_key)
    for ds in datasets:
        for group in groups:
            for k in shots_recorded(values, group, ds):
                metric = f"{k}-shot"
                if (floor, ds, metric) not in values:
                    continue
                diff = paired_differences(values[group, ds, metric], values[floor, ds, metric])
                if diff is None or len(diff.values) < 2:
                    continue
                verdict = "above" if diff.mean > diff.std else "below" if -diff.mean > diff.std else ""
                cell = f"{diff.mean:+.1f} ± {diff.std:.1f} {verdict}".rstrip()
                out.setdefault(ds, {}).setdefault(group, {})[metric] = cell
    return out
