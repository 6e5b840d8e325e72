"""Result tables, built with pandas from the records and nothing else (never edited by hand).

`build_tables()` writes under `results/`: `fewshot.md/.csv`, `classification.md/.csv`, `retrieval.md/.csv`,
`dense.md/.csv`, `fewshot.png` and a `README.md` saying what each measures and how it was produced. The CSVs are
long ("tidy") tables with one row per record and full-precision numbers; the Markdown tables are the same data
pivoted for reading, numbers rounded to two decimals. Every row names its checkpoint (sha256 prefix, or the
`random:` spec), so a number traces back to one record and one checkpoint.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rils_bench.errors import UserError
from rils_bench.fileio import atomic_write
from rils_bench.report import plots
from rils_bench.report.record import HOLDOUT_SPLIT, read_records, records_dir
from rils_bench.report.runs import curves_by_method, read_runs
from rils_bench.report.study import values_by_checkpoint
from rils_bench.report.summary_page import commands, detail_markdown, lead, summary_frame

ROW = ["method", "arch", "text", "steps", "checkpoint", "precision"]  # an encoder (and how it was run), every table
CLASSIFICATION_TASKS = ("linear", "zeroshot", "knn")
DENSE_TASKS = ("coco", "ade")
DENSE_PROBE_TASKS = ("segprobe", "segknn")  # frozen patch tokens, no fine-tuning (`rils_bench.eval.segmentation`)
DENSE_PROBE_METRICS = ("mIoU", "mIoU_std", "mAcc", "aAcc")
IN_DOMAIN = ("fashion-mnist", "animal-mnist")  # built-in sets whose images are in the pre-training pairs
DENSE_ORDER = ("bbox_mAP", "segm_mAP", "AP50", "AP75", "APs", "APm", "APl", "mIoU", "mAcc", "aAcc")


def checkpoint_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The row identity of a record: method, architecture, pre-training steps and a checkpoint id."""
    ckpt = record["checkpoint"]
    ident = ckpt["sha256"][:12] if ckpt.get("sha256") else ckpt["spec"]
    # Records written before the text-tower choice existed all had open_clip's CLIP text transformer.
    text = ckpt.get("text", "clip")
    return {
        "method": ckpt["method"],
        "arch": ckpt["arch"],
        "text": text,
        "steps": ckpt.get("steps", 0),
        "checkpoint": ident,
        "precision": record.get("precision", "fp32"),  # of the evaluation; records before precisions were fp32
    }


def fewshot_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per few-shot record: dataset, encoder, feature, shots, top-1 mean and std (%), seeds."""
    rows = [
        {
            "dataset": r["dataset"],
            **checkpoint_columns(r),
            "feature": r["config"].get("feature", "gap"),
            "shots": int(r["config"]["shots"]),
            "top1_mean": r["metrics"]["top1"],
            "top1_std": r["metrics"].get("top1_std", 0.0),
            "seeds": len(r.get("seeds", [])),
        }
        for r in records
        if r["task"] == "fewshot"
    ]
    columns = ["dataset", *ROW, "feature", "shots", "top1_mean", "top1_std", "seeds"]
    return pd.DataFrame(rows, columns=columns).sort_values(["dataset", *ROW, "feature", "shots"], ignore_index=True)


def protocol(record: dict[str, Any]) -> str:
    """Column label of a classification record: `linear`, `linear-sgd`, `zero-shot`, `kNN`, + non-default feature."""
    task, config = record["task"], record["config"]
    label = {"linear": "linear", "zeroshot": "zero-shot", "knn": "kNN"}[task]
    if task == "linear" and "SGD" in config.get("classifier", ""):
        label += "-sgd"
    if task == "zeroshot" and record["setting"] not in ("", "templates=auto"):
        label += f" ({record['setting'].removeprefix('templates=')})"
    if config.get("feature", "gap") == "cls":
        label += " (cls)"
    return label


def classification_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per linear / zero-shot / kNN record: dataset, protocol, encoder, top-1 and top-5 (%)."""
    rows = [
        {
            "dataset": r["dataset"],
            "protocol": protocol(r),
            **checkpoint_columns(r),
            "top1": r["metrics"]["top1"],
            "top5": r["metrics"].get("top5"),
        }
        for r in records
        if r["task"] in CLASSIFICATION_TASKS
    ]
    columns = ["dataset", "protocol", *ROW, "top1", "top5"]
    return pd.DataFrame(rows, columns=columns).sort_values(["dataset", "protocol", *ROW], ignore_index=True)


def metric_frame(records: Iterable[dict[str, Any]], tasks: Sequence[str], *, seeds: bool = False) -> pd.DataFrame:
    """One row per record of `tasks`: dataset, task, encoder (`seeds`: and the run's seeds, column `seed`), then
    every metric the records carry."""
    identity = [*ROW, "seed"] if seeds else ROW
    rows = [
        {"dataset": r["dataset"], "task": r["task"], **checkpoint_columns(r), **r["metrics"]}
        | ({"seed": ",".join(map(str, r.get("seeds") or []))} if seeds else {})
        for r in records
        if r["task"] in tasks
    ]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["dataset", "task", *identity])
    return frame.sort_values(["dataset", "task", *identity], ignore_index=True)


def pivot(frame: pd.DataFrame, column: str, cell: Callable[[pd.Series], str]) -> pd.DataFrame:
    """Encoders as rows, the values of `column` as columns (in order of appearance), `cell(record row)` as cells.

    Where two records fall into one cell (they cannot, record keys include the setting) the first is kept.
    """
    wide = frame.assign(cell=frame.apply(cell, axis=1)).drop_duplicates([*ROW, column])
    wide = wide.pivot(index=ROW, columns=column, values="cell")
    return wide[list(pd.unique(frame[column]))].fillna("").reset_index().rename_axis(columns=None)


def dense_probe_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per frozen dense probe record: dataset, probe (task and setting, the input size last), encoder,
    metrics."""
    rows = [
        {"dataset": r["dataset"], "probe": f"{r['task']} {r['setting']}", **checkpoint_columns(r), **r["metrics"]}
        for r in records
        if r["task"] in DENSE_PROBE_TASKS
    ]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["dataset", "probe", *ROW])
    return frame.sort_values(["dataset", "probe", *ROW], ignore_index=True)


def _probe_table(frame: pd.DataFrame) -> pd.DataFrame:
    table = metric_columns(frame, DENSE_PROBE_METRICS)
    table.insert(0, "probe", frame["probe"].reset_index(drop=True))
    return table


def metric_columns(frame: pd.DataFrame, metrics: Sequence[str], identity: Sequence[str] = ROW) -> pd.DataFrame:
    """Encoders (`identity` columns) as rows, each of `metrics` that some row has as a column, two decimals."""
    present = [m for m in metrics if m in frame.columns and frame[m].notna().any()]
    out = frame[list(identity)].copy()
    for m in present:
        out[m] = frame[m].map(lambda x: "" if pd.isna(x) else f"{x:.2f}")
    return out.reset_index(drop=True)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' own needs `tabulate`, which the stack does not ship)."""
    if frame.empty:
        return "_no records yet_\n"
    cells = [[str(c) for c in frame.columns], *[[str(v) for v in row] for row in frame.itertuples(index=False)]]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("---" for _ in frame.columns) + "|")
    return "\n".join(lines) + "\n"


def per_dataset(title: str, note: str, frame: pd.DataFrame, table: Callable[[pd.DataFrame], pd.DataFrame]) -> str:
    """A Markdown page: title, note, then one `## dataset` section holding `table(rows of that dataset)`."""
    parts = [f"# {title}\n\n{note}\n"]
    for dataset in sorted(frame["dataset"].unique()) if not frame.empty else []:
        parts.append(f"## {dataset}\n\n{to_markdown(table(frame[frame['dataset'] == dataset]))}")
    if len(parts) == 1:
        parts.append("_no records yet_\n")
    return "\n".join(parts)


def _write_text(path: Path, text: str) -> Path:
    with atomic_write(path) as f:
        f.write(text.encode())
    return path


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.4f")
    return _write_text(path, buffer.getvalue())


def _fewshot_table(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values(["feature", "shots", *ROW]).assign(
        column=lambda f: f["shots"].astype(str) + "-shot" + f["feature"].map(lambda x: "" if x == "gap" else f" ({x})")
    )
    return pivot(frame, "column", lambda r: f"{r['top1_mean']:.2f} ± {r['top1_std']:.2f}")


def _classification_table(frame: pd.DataFrame) -> pd.DataFrame:
    return pivot(frame.sort_values(["protocol", *ROW]), "protocol", lambda r: f"{r['top1']:.2f}")


def build_tables(*, records: Path | None = None, out: Path = Path("results")) -> list[Path]:
    """Build every table, the few-shot plot and `README.md` under `out` from the records under `records`.

    Returns the files written. Deterministic: the same records give byte-identical files.
    """
    root = records or records_dir()
    if not root.is_dir():
        raise UserError(f"records folder {root} does not exist: nothing to build tables from (results/ left as is)")
    every = [r for r in read_records(root) if r["split"] != HOLDOUT_SPLIT]  # hold-outs justify a recipe only
    if not every:
        raise UserError(f"records folder {root} holds no usable records: refusing to write empty tables over {out}")
    few, cls = fewshot_frame(every), classification_frame(every)
    ret = metric_frame(every, ("retrieval",))
    dense = metric_frame(every, DENSE_TASKS, seeds=True)  # fine-tuning seeds: one row per run
    ret_metrics = [f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)]
    dense_metrics = [*DENSE_ORDER, *sorted(set(dense.columns) - {*DENSE_ORDER, "dataset", "task", "seed", *ROW})]
    pages = {
        "fewshot": (few, per_dataset("Few-shot top-1 (%)", FEWSHOT_NOTE, few, _fewshot_table)),
        "classification": (cls, per_dataset("Classification top-1 (%)", CLASS_NOTE, cls, _classification_table)),
        "retrieval": (ret, per_dataset("Retrieval (%)", RETRIEVAL_NOTE, ret, lambda f: metric_columns(f, ret_metrics))),
        "dense": (
            dense,
            per_dataset(
                "Dense transfer", DENSE_NOTE, dense, lambda f: metric_columns(f, dense_metrics, [*ROW, "seed"])
            ),
        ),
    }
    probes = dense_probe_frame(every)
    if not probes.empty:  # a page of its own only once there are probe records (results/ stays as it was before)
        pages["dense_probes"] = (probes, per_dataset("Frozen dense probes", DENSE_PROBE_NOTE, probes, _probe_table))
    values, state = values_by_checkpoint(every), study_state(out, every)
    retrieval = sorted({r["dataset"] for r in every if r["task"] == "retrieval"})
    written = []
    for name, (frame, page) in pages.items():
        written += [_write_csv(out / f"{name}.csv", frame), _write_text(out / f"{name}.md", page)]
    written.append(_write_csv(out / "summary.csv", summary_frame(values, state["datasets"], retrieval)))
    written.append(_write_text(out / "study.md", detail_markdown(values, state["datasets"])))
    written.append(plots.fewshot_plot(values, out / "fewshot.png"))
    runs = read_runs(out / "runs")
    if runs:
        written.append(plots.pretrain_curves_plot(curves_by_method(runs), out / "pretrain_curves.png"))
    written.append(_write_text(out / "README.md", readme(every, lead(values, state, retrieval), state, bool(runs))))
    return written


def study_state(out: Path, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`out/study.json` (written by `rils-bench study`: budget, sets, machine, seconds per unit), or what the
    records say when there is none: the few-shot sets, all of them in-domain candidates."""
    path = out / "study.json"
    state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    fewshot_sets = sorted({r["dataset"] for r in records if r["task"] == "fewshot"})
    state.setdefault("datasets", fewshot_sets)
    state.setdefault("in_domain", [d for d in fewshot_sets if d in IN_DOMAIN])
    return state


FEWSHOT_NOTE = (
    "k training images per class, logistic-regression probe, C chosen by cross-validation inside the k-shot set; "
    "top-1 on the full val split, mean ± sample std over seeds. Full-precision values: `fewshot.csv`."
)
CLASS_NOTE = (
    "linear: logistic regression on all of train, C chosen on a held-out 10 % of train, refit; zero-shot: prompt "
    "ensembles through the text tower; kNN: k = 20, T = 0.07 (DINO). Top-1 on val. Full values: "
    "`classification.csv`."
)
RETRIEVAL_NOTE = "Recall@k of the paired caption (image -> text, i2t) or image (text -> image, t2i)."
DENSE_NOTE = "Fine-tuned with mmdet (coco: box / mask mAP) and mmseg (ade: mIoU, mAcc, aAcc) on the built-in sets."
DENSE_PROBE_NOTE = (
    "Frozen patch tokens, no fine-tuning: `segprobe` (DINOv2's linear head, lr chosen on a hold-out of train, mean and "
    "std over head seeds) and `segknn` (Hummingbird's dense nearest-neighbour retrieval, no training); mIoU, mAcc, "
    "aAcc (%) on val at the labels' resolution. The probe's input size ends its setting."
)


def readme(records: Sequence[dict[str, Any]], summary: str, state: dict[str, Any], curves: bool) -> str:
    """`results/README.md`: the summary first, then the detail tables and plots, how to regenerate them (on what
    machine, in how long), what each table measures, and which records and code it used."""
    encoders = ({k: v for k, v in checkpoint_columns(r).items() if k != "precision"} for r in records)
    checkpoints = sorted({tuple(e.values()) for e in encoders}, key=str)
    shas = ", ".join(f"`{s}`" for s in sorted({r.get("git_sha", "unknown") for r in records})) or "(none)"
    probes = any(r["task"] in DENSE_PROBE_TASKS for r in records)  # their section only once they exist
    lines = [summary, DETAIL_HEAD + ("`pretrain_curves.png` (loss terms against images seen, one line per method).\n"
             if curves else "\n"), regenerate(state), PROTOCOLS, *([DENSE_PROBE_PROTOCOL] if probes else []),
             "## Provenance\n"]  # fmt: skip
    lines += [f"Built from {len(records)} record(s) under `results/records/`, by code at git {shas}.", ""]
    lines.append("Checkpoints (method, architecture, text tower, pre-training steps, id):")
    lines += [f"- {m}, {a}, text tower {t}, {s} steps: `{c}`" for m, a, t, s, c in checkpoints] or ["- (none yet)"]
    return "\n".join(lines) + "\n"


def regenerate(state: dict[str, Any]) -> str:
    """How the study's records were made: the command, the machine and the compute time per stage."""
    seconds = state.get("seconds") or {}
    if not seconds:
        return "## How to regenerate\n\nRerun the evaluations that wrote `records/`, then `make tables`.\n"
    spent = ", ".join(f"{stage} {sum(units.values()) / 60:.0f} min" for stage, units in sorted(seconds.items()))
    return (
        "## How to regenerate\n\n"
        f"{commands(state)} (resumable: it skips every run and evaluation already recorded; "
        "`--force` redoes them), then `make tables` rebuilds these files from `records/` and `runs/`. "
        f"Compute time of the recorded runs: {spent}, on {state.get('machine', 'an unrecorded machine')} "
        "(`study.json` has the seconds per run and checkpoint).\n"
    )


DETAIL_HEAD = """\
## Detail

`study.md`: the summary's aggregation per classification set, retrieval subset and dense set (`summary.csv`: the
summary's full values). `fewshot.png`: few-shot top-1 against k, one line per method, error bars = std over
pre-training x probe seeds. Per checkpoint: `fewshot.md`, `classification.md`, `retrieval.md`, `dense.md` (and their
CSVs). """


PROTOCOLS = """\
## What each table measures

Everything here is generated by `rils-bench table` (`make tables`) from the JSON records in `records/`, one
per (checkpoint, task, dataset, setting), each written by an evaluation command. Do not edit these files: rerun
the evaluation, then `make tables`. Every row names its checkpoint (sha256 prefix, or `random:<arch>` for a randomly
initialised encoder, the floor every method must beat); the record behind a number holds the checkpoint's full
sha256, pre-training steps, the dataset's content hash, split, seeds, per-seed values, the hyper-parameters chosen
and how, the rils-bench version, git SHA and date. No column shows paper numbers: the RILS paper evaluates on
ImageNet, COCO and ADE20K, not on these built-in sets.

Features are taken from the frozen encoder: images resized (bicubic) to the encoder's input size, gray -> RGB,
CLIP's mean/std; the feature is the mean of the final-normed patch tokens (`gap`, what pre-training pools) unless a
row says `cls`. The `precision` column is the one the evaluation ran in (`--precision`; `auto` = bf16 autocast on a
CPU with native bf16 or a GPU, fp32 otherwise; records from before the option existed were fp32).

## `fewshot.md`, `fewshot.csv`, `fewshot.png`

Top-1 (%) on the full val split with k = 1, 2, 4, ... training images per class, mean ± sample standard
deviation over seeds (`fewshot.png` pools them per method).
Produced by `rils-bench fewshot --ckpt CKPT --dataset NAME --shots 1,2,4 --seeds 5`: per seed, exactly k images of
every class sampled from train, an L2-regularised multinomial logistic regression (scikit-learn, L-BFGS) whose C
is chosen by stratified cross-validation inside the k-shot set (min(k, 5) folds; C = 1 fixed at k = 1, where
nothing can be held out), refit on the k-shot set, evaluated on all of val.

## `classification.md`, `classification.csv`

Top-1 (%) on val by three protocols. `linear`: `rils-bench linear`, the same logistic regression on all of train,
C chosen on a stratified held-out 10 % of train, then refit on all of train (`linear-sgd`: an SGD linear head on
standardised features, its learning rate chosen the same way). `zero-shot`: `rils-bench zeroshot`, class-name
prompts (CLIP's 80 ImageNet templates, or a short per-dataset set), normalised text embeddings averaged per class,
cosine similarity with the projected image embedding. `kNN`: `rils-bench knn`, cosine similarity, k = 20
neighbours voting with weight exp(sim / 0.07) (DINO). The CSV adds top-5 where a set has at least 5 classes.

## `retrieval.md`, `retrieval.csv`

Recall@1/5/10 (%) of the paired caption for each image (i2t) and of the paired image for each caption (t2i), by
`rils-bench retrieval` on the built-in held-out pairs (items never seen in pre-training), cosine similarity of the
projected embeddings.

## `dense.md`, `dense.csv`

Detection and instance segmentation (coco records: box and mask mAP) and semantic segmentation (ade records:
mIoU, mAcc, aAcc), from the mmdet / mmseg fine-tuning harness on the built-in `pastecoco` / `pasteade` sets.
"""
DENSE_PROBE_PROTOCOL = """## `dense_probes.md`, `dense_probes.csv`

Frozen patch tokens, no fine-tuning: `rils-bench segprobe` (DINOv2's linear head; its learning rate chosen on a 10 %
hold-out of train; mean and std over head seeds) and `rils-bench segknn` (Hummingbird's dense nearest-neighbour
retrieval, no training, scored without matching), mIoU / mAcc / aAcc on pasteade val; the summary's `seg linear` and
`seg kNN` columns are their mIoU. The input size ends the setting (the 32-px study encoders run at 128 px, the 16 x 16
patch grid the reference ViT-S/14 has at 224 px). `dinov2-s14` is the reference encoder (`--ckpt
reference:dinov2-s14`, a publicly pre-trained ViT-S/14), an upper anchor beside the floors.
"""
