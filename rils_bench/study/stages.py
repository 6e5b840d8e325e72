"""The study's stages. Each skips the work whose result is already there (`force=True` redoes it), so a study that
was interrupted, or that finds itself on another machine, resumes where it stopped.

- `pretrain`: one `rils-bench pretrain` subprocess per run (a fresh process per mmengine Runner), resumed from the
  run's latest mmengine checkpoint when it was killed; then a run file `results/runs/<method>-seed<S>.json`
  (checkpoint sha256 and path, settings, git SHA, wall time, loss curves). Skipped when the run file exists.
- `eval`: few-shot, linear, kNN, zero-shot and retrieval of every run's checkpoint and every floor, through the
  same `run_*` functions as the CLI; a unit is skipped when its record exists for the same checkpoint and settings.
- `dense`: `rils-bench dense` coco and ade of every run and the random floor, skipped likewise.
- `tables`: `rils-bench table` over the study's records and run files.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rils_bench import provenance
from rils_bench.errors import UserError
from rils_bench.fileio import atomic_write, sha256_of
from rils_bench.report.record import read_records
from rils_bench.report.runs import RUN_SCHEMA, read_curves
from rils_bench.report.study import checkpoint_id
from rils_bench.study.plan import Run, Study

Log = Callable[[str], None]


def say(message: str) -> None:
    print(f"study: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------- pretrain


def pretrain_stage(study: Study, *, force: bool = False, log: Log = say) -> None:
    """Pre-train every run that has no run file yet (all of them with `force`, from scratch)."""
    for i, run in enumerate(study.runs, 1):
        run_file = study.run_files / f"{run.name}.json"
        if run_file.is_file() and not force:
            log(f"[{i}/{len(study.runs)}] pretrain {run.name}: done before ({run_file}), skipped")
            continue
        if force and run.work_dir.exists():
            shutil.rmtree(run.work_dir)
        log(f"[{i}/{len(study.runs)}] pretrain {run.name}: {study.budget['steps']} steps of {run.config.name}, "
            f"log {run.work_dir / 'pretrain.log'}")  # fmt: skip
        started = time.monotonic()
        export = pretrain(run)
        wall = time.monotonic() - started
        write_json(run_file, run_record(study, run, export, wall))
        log(f"[{i}/{len(study.runs)}] pretrain {run.name}: {wall:.0f} s, checkpoint {export}")
        add_time(study, "pretrain", run.name, wall)


def pretrain(run: Run) -> Path:
    """Run (or resume) one pre-training in a subprocess; its output goes to `<work_dir>/pretrain.log`.

    Raises:
        UserError: the run failed (its last log lines are named), or its work dir holds another budget's result.
    """
    export = find_export(run.work_dir)
    if export is not None:  # finished before its run file was written (killed in between): nothing to train
        return check_steps(export, run)
    options = [f"{k}={v}" for k, v in run.cfg_options.items()]
    command = [sys.executable, "-m", "rils_bench.cli", "pretrain", str(run.config), "--work-dir", str(run.work_dir)]
    command += ["--resume", "auto", "--cfg-options", *options]
    run.work_dir.mkdir(parents=True, exist_ok=True)
    log_path = run.work_dir / "pretrain.log"
    with log_path.open("a", encoding="utf-8") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    export = find_export(run.work_dir)
    if done.returncode != 0 or export is None:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise UserError(
            f"pre-training {run.name} failed (exit {done.returncode}); {log_path} ends: " + " | ".join(tail)
        )
    return check_steps(export, run)


def find_export(work_dir: Path) -> Path | None:
    exports = sorted((work_dir / "export").glob("*.pth"), key=lambda p: p.stat().st_mtime) if work_dir.is_dir() else []
    return exports[-1] if exports else None


def check_steps(export: Path, run: Run) -> Path:
    steps = export_meta(export).get("steps")
    if steps != run.cfg_options["train_cfg.max_iters"]:
        raise UserError(
            f"{export} was trained for {steps} steps, the study asks {run.cfg_options['train_cfg.max_iters']}: "
            "rerun with --force to train it again"
        )
    return export


def export_meta(export: Path) -> dict[str, Any]:
    from rils_bench.checkpoint import read_tensor_file

    payload = read_tensor_file(export, expected="a rils-bench checkpoint")
    return dict(payload.get("meta", {})) if isinstance(payload, dict) else {}


def run_record(study: Study, run: Run, export: Path, wall: float) -> dict[str, Any]:
    """What the tables and a resumed study know of a pre-training run without its work dir."""
    meta = export_meta(export)
    return {
        "schema": RUN_SCHEMA,
        "study": study.name,
        "run": run.name,
        "method": run.method,
        "seed": run.seed,
        "config": str(run.config),
        "cfg_options": run.cfg_options,
        "budget": study.budget,
        "checkpoint": {"path": str(export), "sha256": sha256_of(export), "steps": meta.get("steps")},
        "precision": meta.get("precision", "fp32"),
        "git_sha": meta.get("git_sha") or provenance.git_sha(),
        "wall_s": round(wall, 1),
        "machine": describe_machine(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "curves": read_curves(run.work_dir, study.budget["batch_size"]),
    }


# -------------------------------------------------------------------------------------------------------------- eval


@dataclass(frozen=True)
class Encoder:
    """A checkpoint (or floor) to evaluate: its `--ckpt` spec and the identity its records carry."""

    label: str
    spec: str
    ident: str  # sha256, or the spec of a file-less floor


def encoders(study: Study, *, floors: bool = True, anchors: bool = False) -> Iterator[Encoder]:
    """Every run's checkpoint (from its run file), then the floors, then (`anchors`) the upper anchors.

    Raises:
        UserError: a run without a run file (the pretrain stage did not run). A checkpoint file that is gone is
            the caller's to report, where it is needed.
    """
    for run in study.runs:
        run_file = study.run_files / f"{run.name}.json"
        if not run_file.is_file():
            raise UserError(f"{run.name} has not been pre-trained ({run_file} missing): run the pretrain stage first")
        checkpoint = json.loads(run_file.read_text(encoding="utf-8"))["checkpoint"]
        yield Encoder(run.name, checkpoint["path"], checkpoint["sha256"])
    for spec in (study.floors if floors else []) + (study.anchors if anchors else []):
        yield Encoder(spec, spec, spec)


def eval_stage(study: Study, *, force: bool = False, log: Log = say) -> None:
    """Every classification evaluation of every encoder that is not recorded yet."""
    from rils_bench.eval.features import ExtractOptions, precision_of

    ev = study.evaluation
    options = ExtractOptions(batch_size=int(ev.get("batch_size", 256)), precision=study.budget["precision"])
    precision = precision_of(options)
    done = set() if force else recorded(study.records, precision)
    todo = list(encoders(study, anchors=True))
    for i, enc in enumerate(todo, 1):
        # An anchor gets the dense probes only (classification at its native 518 px is hours per set on a CPU).
        units = eval_units(study, enc) if enc.spec not in study.anchors else anchor_units(study, enc)
        units = [u for u in units if force or u.key not in done]
        if not units:
            log(f"[{i}/{len(todo)}] eval {enc.label}: every record exists, skipped")
            continue
        if not Path(enc.spec).is_file() and not is_named(enc.spec):
            raise UserError(
                f"the checkpoint of {enc.label} ({enc.ident[:12]}) is gone from {enc.spec}: rerun its pre-training "
                f"(`rils-bench study ... --stages pretrain --force`) or restore the file"
            )
        started = time.monotonic()
        text = has_text_tower(enc.spec)
        for unit in units:
            if unit.needs_text and not text:
                continue
            log(f"[{i}/{len(todo)}] eval {enc.label}: {unit.describe}")
            unit.run(ckpt=enc.spec, options=options, records=study.records)
        add_time(study, "eval", enc.label, time.monotonic() - started)


@dataclass(frozen=True)
class Unit:
    """One evaluation call: what `recorded` keys it fills, and how to run it."""

    key: tuple  # (ident, task, dataset, setting, seeds); a few-shot unit is keyed by its largest k, written last
    describe: str
    run: Callable[..., Any]
    needs_text: bool = False


def eval_units(study: Study, enc: Encoder) -> list[Unit]:
    from functools import partial

    from rils_bench.eval.fewshot import run_fewshot
    from rils_bench.eval.knn import TEMPERATURE, K, run_knn
    from rils_bench.eval.linear import run_linear
    from rils_bench.eval.metrics import train_cap
    from rils_bench.eval.retrieval import run_retrieval
    from rils_bench.eval.zeroshot import run_zeroshot

    ev = study.evaluation
    shots, probe_seeds, cap = list(ev["shots"]), int(ev["probe_seeds"]), ev.get("train_per_class")
    units = []
    for ds in ev["datasets"]:
        # A few-shot unit writes one record per k, the largest last: its presence means the unit finished.
        units.append(
            Unit(
                (enc.ident, "fewshot", ds, f"{max(shots)}-shot,gap", tuple(range(probe_seeds))),
                f"few-shot {ds} k={shots} x {probe_seeds} seeds",
                partial(run_fewshot, dataset=ds, shots=shots, seeds=probe_seeds, log=quiet),
            )
        )
        units.append(
            Unit(
                (enc.ident, "linear", ds, "logreg,gap" + train_cap(cap), (0,)),
                f"linear {ds}",
                partial(run_linear, dataset=ds, train_per_class=cap, log=quiet),
            )
        )
        units.append(
            Unit(
                (enc.ident, "knn", ds, f"k={K},T={TEMPERATURE:g},gap" + train_cap(cap), ()),
                f"kNN {ds}",
                partial(run_knn, dataset=ds, train_per_class=cap, log=quiet),
            )
        )
        units.append(
            Unit(
                (enc.ident, "zeroshot", ds, "templates=auto", ()),
                f"zero-shot {ds}",
                partial(run_zeroshot, dataset=ds, log=quiet),
                needs_text=True,
            )
        )
    units += dense_probe_units(ev.get("dense_probes"), enc)
    if ev.get("retrieval"):
        units.append(
            Unit(
                (enc.ident, "retrieval", "*", "", ()),
                f"retrieval {ev['retrieval']}",
                partial(run_retrieval, dataset=ev["retrieval"], log=quiet),
                needs_text=True,
            )
        )
    return units  # fmt: skip


def anchor_units(study: Study, enc: Encoder) -> list[Unit]:
    """An anchor's evaluation units: the dense probes only."""
    return dense_probe_units(study.evaluation.get("dense_probes"), enc)


def dense_probe_units(probes: dict[str, Any] | None, enc: Encoder) -> list[Unit]:
    """The frozen dense probes of the study config's `evaluation.dense_probes` (dataset, image_size, tasks,
    head_seeds); none when it is absent."""
    from functools import partial

    from rils_bench.eval.segknn import run_segknn, segknn_setting
    from rils_bench.eval.segprobe import run_segprobe, segprobe_setting

    if not probes:
        return []
    ds, size, seeds = probes["dataset"], int(probes["image_size"]), int(probes.get("head_seeds", 3))
    units = []
    if "segprobe" in probes["tasks"]:
        units.append(Unit(
            (enc.ident, "segprobe", ds, f"{segprobe_setting()},{size}px", tuple(range(seeds))),
            f"segprobe {ds} at {size} px x {seeds} head seeds",
            partial(run_segprobe, dataset=ds, image_size=size, seeds=seeds, log=quiet),
        ))  # fmt: skip
    if "segknn" in probes["tasks"]:
        units.append(Unit(
            (enc.ident, "segknn", ds, f"{segknn_setting()},{size}px", (0,)),
            f"segknn {ds} at {size} px",
            partial(run_segknn, dataset=ds, image_size=size, log=quiet),
        ))  # fmt: skip
    return units


def recorded(root: Path, precision: str) -> set[tuple]:
    """Unit keys already recorded under `root` in `precision`. Retrieval records are per subset: any one of them
    marks the retrieval set done (they are written together)."""
    keys = set()
    for r in read_records(root, log=quiet) if root.is_dir() else []:
        if r.get("precision", "fp32") != precision:
            continue
        ident = checkpoint_id(r)
        if r["task"] == "retrieval":
            keys.add((ident, "retrieval", "*", "", ()))
        else:
            keys.add((ident, r["task"], r["dataset"], r["setting"], tuple(r.get("seeds") or ())))
    return keys


def is_floor(spec: str) -> bool:
    return spec.startswith(("random:", "pixels"))


def is_named(spec: str) -> bool:
    """A floor or a built-in reference encoder: a spec that names no checkpoint file of the study."""
    return is_floor(spec) or spec.startswith("reference:")


def has_text_tower(spec: str) -> bool:
    from rils_bench.models.pretrained import load_pretrained

    encoder, _ = load_pretrained(spec)
    return getattr(encoder, "text", None) is not None


def quiet(_: str) -> None:
    """The probes' per-seed lines: the study prints one line per unit instead."""


# ------------------------------------------------------------------------------------------------------------- dense


def dense_stage(study: Study, *, force: bool = False, log: Log = say) -> None:
    """coco and ade fine-tuning of every run's checkpoint of the `dense.seeds` pre-training seeds (default all), of
    the random floor and of the anchors, unless recorded."""
    from rils_bench.adapters.finetune import run_dense

    tasks = list(study.dense.get("tasks", ["coco", "ade"]))
    records = read_records(study.records, log=quiet) if study.records.is_dir() else []
    done = set() if force else {(checkpoint_id(r), r["task"]) for r in records}
    todo = dense_encoders(study)
    for i, enc in enumerate(todo, 1):
        for task in tasks:
            if (enc.ident, task) in done:
                log(f"[{i}/{len(todo)}] dense {task} {enc.label}: recorded, skipped")
                continue
            if not Path(enc.spec).is_file() and not is_named(enc.spec):
                raise UserError(f"the checkpoint of {enc.label} is gone from {enc.spec}: rerun its pre-training")
            log(f"[{i}/{len(todo)}] dense {task} {enc.label}")
            started = time.monotonic()
            run_dense(
                task=task,
                ckpt=enc.spec,
                data_root=dense_root(study.dense.get("data_roots", {}).get(task)),
                work_dir=study.work_dir / "dense" / enc.label.replace(":", "_") / task,
                max_iters=study.dense.get("max_iters"),
                records_root=study.records,
                precision=study.budget["precision"],
            )
            add_time(study, f"dense-{task}", enc.label, time.monotonic() - started)


def dense_encoders(study: Study) -> list[Encoder]:
    """What the dense stage fine-tunes: the checkpoints of the `dense.seeds` pre-training seeds (default all), the
    random floor (the pixels floor has no backbone) and the anchors."""
    seeds = tuple(f"-seed{s}" for s in study.dense.get("seeds", study.budget["seeds"]))
    return [
        e
        for e in encoders(study, anchors=True)
        if e.label.endswith(seeds) or e.spec.startswith("random:") or e.spec in study.anchors
    ]


def dense_root(name: str | None) -> Path | None:
    """`<built-in set>/<folder>` (e.g. `shapes/coco`) -> that folder of the prepared set (prepared now if needed);
    None -> the dense config's own built-in set."""
    if name is None:
        return None
    from rils_bench.data.builtin import prepare

    dataset, _, folder = name.partition("/")
    return prepare.prepare(dataset) / folder


# ------------------------------------------------------------------------------------------------------- bookkeeping


def describe_machine() -> str:
    from rils_bench.envinfo import describe_cpu

    return describe_cpu()


def note_study(study: Study, command: str) -> None:
    """Write what the tables need to know of the study into `results/study.json` (kept: the seconds spent, and the
    commands of other study configs that filled the same results, e.g. default then minilm)."""
    state = read_state(study)
    if command not in state.setdefault("commands", []):
        state["commands"].append(command)
    state.update(
        budget=study.budget,
        datasets=list(study.evaluation["datasets"]),
        in_domain=list(study.evaluation.get("in_domain", [])),
        floors=study.floors,
    )
    write_json(study.results / "study.json", state)


def add_time(study: Study, stage: str, unit: str, seconds: float) -> None:
    """Add `seconds` of work to `results/study.json` (per stage and unit; a resumed unit adds up), with the machine."""
    state = read_state(study)
    times = state.setdefault("seconds", {}).setdefault(stage, {})
    times[unit] = round(times.get(unit, 0.0) + seconds, 1)
    state["machine"] = describe_machine()
    write_json(study.results / "study.json", state)


def read_state(study: Study) -> dict[str, Any]:
    path = study.results / "study.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        f.write((json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
