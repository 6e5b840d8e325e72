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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rils_bench import __version__, provenance
from rils_bench.fileio import atomic_write

if TYPE_CHECKING:  # records and tables are read and built without the model stack (no torch import)
    from rils_bench.models.pretrained import PretrainedInfo

SCHEMA = "rils_bench/record/v1"
TASKS = ("fewshot", "linear", "zeroshot", "knn", "retrieval", "coco", "ade", "segprobe", "segknn")


# The split of a record that scored a hold-out of the train split (choosing a recipe without val): not a result.
HOLDOUT_SPLIT = "train-holdout"


def records_dir() -> Path:
    """`$RILS_BENCH_RECORDS`, default `results/records` under the current directory."""
    return Path(os.environ.get("RILS_BENCH_RECORDS", "results/records"))


def record_key(
    *,
    checkpoint_sha256: str | None,
    checkpoint_spec: str,
    task: str,
    dataset: str,
    split: str,
    setting: str,
    dataset_sha256: str | None = None,
    seeds: list[int] | None = None,
    precision: str = "fp32",
) -> str:
    """Identity of a record: everything that changes its numbers. The same evaluation of the same checkpoint on
    the same data always maps to the same key (and replaces its record); two folders of the same name but
    different content (`dataset_sha256`), or another set of seeds (a 1-seed smoke run vs the 5-seed result), do
    not. Protocol values beyond the seeds (SGD epochs, k, templates, shots) are in `setting`. The precision of the
    evaluation enters only when it is not fp32, so records written before precisions existed keep their keys."""
    ident = checkpoint_sha256 or checkpoint_spec  # random:<arch> has no file, its spec is its identity
    parts = [ident, task, dataset, split, setting, dataset_sha256 or "", ",".join(map(str, seeds or []))]
    if precision != "fp32":
        parts.append(precision)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


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
    precision: str = "fp32",
) -> dict[str, Any]:
    """Build a record dict (JSON-serialisable). `metrics` are the aggregates shown in tables; `precision` is the
    one the evaluation ran in (fp32, bf16, fp16; `rils_bench.precision`)."""
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
            dataset_sha256=dataset_sha256,
            seeds=seeds,
            precision=precision,
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
            "text": text_tower_of(checkpoint),
            "steps": checkpoint.steps,
            "pretrain_seed": checkpoint.seed,
            "pretrain_precision": checkpoint.meta.get("precision", "fp32"),
        },
        "precision": precision,
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


def text_tower_of(checkpoint: PretrainedInfo) -> str:
    """The text tower a record's encoder has, for the tables: `clip` (open_clip's CLIP text transformer, trained with
    the image tower), `hf:<name>` (a pre-trained sentence encoder), `open_clip` (an open_clip model's own), or
    `none` (image-only)."""
    config = checkpoint.meta.get("model_config") or {}  # none for random:<arch>: a registry size, CLIP tower
    if checkpoint.kind == "open_clip":
        return "open_clip"
    if checkpoint.kind == "timm" or config.get("embed_dim", 0) is None:
        return "none"
    if config.get("text_tower") == "hf":
        return f"hf:{Path(str(config.get('hf_model'))).name}"
    return "clip"


def write_record(record: dict[str, Any], root: Path | None = None, *, log: Callable[[str], None] | None = None) -> Path:
    """Write atomically as `<root>/<task>/<dataset>/<key>.json`; an existing record of the same key (the same
    evaluation run again) is replaced, and `log` (default: stderr) says so in one line."""
    root = root or records_dir()
    path = root / record["task"] / record["dataset"] / f"{record['key']}.json"
    if path.exists():
        (log or _note)(
            f"replacing record {path} (same checkpoint, data, setting and seeds; previous from {_date(path)})"
        )
    with atomic_write(path) as f:
        f.write((json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return path


def read_records(
    root: Path | None = None, *, task: str | None = None, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Every well-formed record under `root` (optionally of one task), sorted by path for stable tables.

    A file that is not valid JSON, or a record that lacks a field the tables need, is skipped and named in one
    line through `log` (default: stderr); nothing else about it is read.
    """
    root = root or records_dir()
    log = log or _warn
    pattern = f"{task}/*/*.json" if task else "*/*/*.json"
    records = []
    for path in sorted(root.glob(pattern)):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            log(f"skipped record {path}: not readable JSON ({err})")
            continue
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            log(f"skipped {path}: not a {SCHEMA} record")
            continue
        problem = record_problem(record)
        if problem:
            log(f"skipped record {path}: {problem}")
            continue
        records.append(record)
    return records


def record_problem(record: dict[str, Any]) -> str | None:
    """What makes a record unusable for the tables (a missing or mistyped field), or None."""
    for field, kind in (("task", str), ("dataset", str), ("split", str), ("setting", str), ("metrics", dict)):
        if not isinstance(record.get(field), kind):
            return f"field {field!r} missing or not a {kind.__name__}"
    checkpoint = record.get("checkpoint")
    if not isinstance(checkpoint, dict) or not all(
        isinstance(checkpoint.get(k), str) for k in ("spec", "method", "arch")
    ):
        return "field 'checkpoint' lacks spec, method or arch"
    if record["task"] not in TASKS:
        return f"unknown task {record['task']!r}"
    if record["task"] in ("fewshot", "linear", "zeroshot", "knn") and not _is_number(record["metrics"].get("top1")):
        return "no numeric metrics.top1"
    if record["task"] == "fewshot" and not isinstance((record.get("config") or {}).get("shots"), int):
        return "no integer config.shots"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _date(path: Path) -> str:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("date", "an unknown date")
    except (OSError, ValueError):
        return "an unreadable file"


def _note(message: str) -> None:
    print(f"rils-bench: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"rils-bench: warning: {message}", file=sys.stderr)
