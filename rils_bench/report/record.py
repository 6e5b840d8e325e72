"""One JSON record per (checkpoint, task, dataset, split, setting): the only source of every table.

A record carries everything needed to trace its numbers: which checkpoint (sha256, method, architecture,
pre-training steps), which data (dataset content hash, split), which protocol (task, setting,
hyper-parameters and how they were chosen, seeds), per-seed values and aggregates, and the code that ran
(rils-bench version, git SHA) and when. Re-running the same evaluation replaces its record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rils_bench import __version__, provenance
from rils_bench.fileio import atomic_write

if TYPE_CHECKING:  # records and tables are read and built without the model stack (no torch import)
    from rils_bench.models.pretrained import PretrainedInfo

SCHEMA = "rils_bench/record/v1"
TASKS = ("fewshot", "linear", "zeroshot", "knn", "retrieval", "coco", "ade")


def records_dir() -> Path:
    """`$RILS_BENCH_RECORDS`, default `results/records` under the current directory."""
    return Path(os.environ.get("RILS_BENCH_RECORDS", "results/records"))


def record_key(
    *, checkpoint_sha256: str | None, checkpoint_spec: str, task: str, dataset: str, split: str, setting: str
) -> str:
    """Identity of a record: the same evaluation of the same checkpoint always maps to the same key."""
    ident = checkpoint_sha256 or checkpoint_spec  # random:<arch> has no file, its spec is its identity
    return hashlib.sha256("\0".join([ident, task, dataset, split, setting]).encode()).hexdigest()[:16]


def make_record(
    *,
    checkpoint: PretrainedInfo,
    task: str,
    dataset: str,
    split: str,
    metrics: dict[str, float],
    setting: str = "",
    dataset_sha256: str | None = None,
    per_seed: dict[str, list[float]] | None = None,
    seeds: list[int] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    git_sha: str | None = None,
) -> dict[str, Any]:
    """Build a record dict (JSON-serialisable). `metrics` are the aggregates shown in tables."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {TASKS}")
    return {
        "schema": SCHEMA,
        "key": record_key(
            checkpoint_sha256=checkpoint.sha256,
            checkpoint_spec=checkpoint.spec,
            task=task,
            dataset=dataset,
            split=split,
            setting=setting,
        ),
        "task": task,
        "dataset": dataset,
        "split": split,
        "setting": setting,
        "checkpoint": {
            "spec": checkpoint.spec,
            "kind": checkpoint.kind,
            "sha256": checkpoint.sha256,
            "method": checkpoint.method,
            "arch": checkpoint.arch,
            "steps": checkpoint.steps,
            "pretrain_seed": checkpoint.seed,
        },
        "dataset_sha256": dataset_sha256,
        "metrics": metrics,
        "per_seed": per_seed or {},
        "seeds": seeds or [],
        "hyperparameters": hyperparameters or {},
        "config": config or {},
        "rils_bench_version": __version__,
        "git_sha": git_sha or provenance.git_sha(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_record(record: dict[str, Any], root: Path | None = None) -> Path:
    """Write atomically as `<root>/<task>/<dataset>/<key>.json`; an existing record of the same key is replaced."""
    root = root or records_dir()
    path = root / record["task"] / record["dataset"] / f"{record['key']}.json"
    with atomic_write(path) as f:
        f.write((json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return path


def read_records(root: Path | None = None, *, task: str | None = None) -> list[dict[str, Any]]:
    """Every record under `root` (optionally of one task), sorted by path for stable tables."""
    root = root or records_dir()
    pattern = f"{task}/*/*.json" if task else "*/*/*.json"
    records = []
    for path in sorted(root.glob(pattern)):
        record = json.loads(path.read_text())
        if record.get("schema") == SCHEMA:
            records.append(record)
    return records
