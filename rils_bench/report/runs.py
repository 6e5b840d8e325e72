"""Pre-training run files (`results/runs/<method>-seed<S>.json`, written by the study): which checkpoint a run
produced, with which settings and code, how long it took, and its loss curves. Read by the tables for
`pretrain_curves.png` and the study's provenance; no torch needed."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

RUN_SCHEMA = "rils_bench/study-run/v1"
NOT_CURVES = {"lr", "base_lr", "time", "data_time", "memory", "step", "iter", "epoch", "images_per_s", "grad_norm"}


def read_curves(work_dir: Path, batch_size: int) -> dict[str, list[float]]:
    """The logged training scalars of an mmengine work dir (`<timestamp>/vis_data/scalars.json`, every timestamp:
    a resumed run logs in a new one) as `{"step": [...], "images_seen": [...], term: [...]}`, one entry per logged
    step (the last one logged wins); terms are the loss and its named parts, never lr or timings."""
    by_step: dict[int, dict[str, float]] = {}
    for path in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if "step" in row and "loss" in row:
                by_step[int(row["step"])] = {k: float(v) for k, v in row.items() if k not in NOT_CURVES}
    steps = sorted(by_step)
    terms = sorted({k for row in by_step.values() for k in row})
    curves: dict[str, list[float]] = {"step": steps, "images_seen": [s * batch_size for s in steps]}
    for term in terms:
        curves[term] = [by_step[s].get(term, float("nan")) for s in steps]
    return curves


def read_runs(folder: Path) -> list[dict[str, Any]]:
    """Every run file under `folder`, sorted by name; files of another schema are skipped."""
    runs = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(run, dict) and run.get("schema") == RUN_SCHEMA:
            runs.append(run)
    return runs


def seeds_by_checkpoint(runs: list[dict[str, Any]]) -> dict[str, int]:
    """checkpoint sha256 -> the run's pre-training seed."""
    return {r["checkpoint"]["sha256"]: int(r["seed"]) for r in runs}


def curves_by_method(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, list[float]]]]:
    """method -> the curves of each of its runs (one per seed)."""
    out: dict[str, list[dict[str, list[float]]]] = defaultdict(list)
    for run in runs:
        out[run["method"]].append(run.get("curves") or {})
    return dict(out)
