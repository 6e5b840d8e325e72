"""`rils-bench study --quick` end to end (every stage, method and floor, the real path at the smallest size), then
resumed: nothing recorded is redone, and what an interruption lost is redone alone."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rils_bench.cli import main
from rils_bench.report.record import read_records
from rils_bench.report.runs import read_runs

METHODS = {"rils", "clip", "mae", "mae_clip", "semmim"}


def snapshot(results):
    return {p: p.stat().st_mtime_ns for p in sorted(results.rglob("*.json")) if p.name != "study.json"}


@pytest.mark.slow
def test_quick_study_fills_every_table_and_resumes_without_redoing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RILS_BENCH_FEATURES", str(tmp_path / "features"))
    results, work = tmp_path / "results", tmp_path / "work"
    argv = [
        "study",
        "configs/study/default.py",
        "--quick",
        "--dense",
        "--work-dir",
        str(work),
        "--results",
        str(results),
    ]
    assert main(argv) == 0

    runs = read_runs(results / "runs")
    assert {(r["method"], r["seed"]) for r in runs} == {(m, s) for m in METHODS for s in (0, 1)}
    for run in runs:
        assert run["checkpoint"]["steps"] == 3 and run["curves"]["images_seen"][-1] <= 48
        assert "loss" in run["curves"] and run["git_sha"]
    records = read_records(results / "records")
    by_task = {
        t: [r for r in records if r["task"] == t]
        for t in ("fewshot", "linear", "knn", "zeroshot", "coco", "ade", "segprobe", "segknn")
    }
    trained = {r["checkpoint"]["method"] for r in by_task["fewshot"]}
    assert trained == METHODS | {"random", "pixels"}
    assert {r["checkpoint"]["method"] for r in by_task["zeroshot"]} == METHODS - {"mae"} | {"random"}  # text towers
    assert {r["checkpoint"]["method"] for r in by_task["coco"]} == METHODS | {"random"}  # seed 0 + the random floor
    assert {r["checkpoint"]["method"] for r in by_task["ade"]} == METHODS | {"random"}
    for probe in ("segprobe", "segknn"):  # every encoder, the floors included, at the probes' 64 px
        assert {r["checkpoint"]["method"] for r in by_task[probe]} == METHODS | {"random", "pixels"}
        assert all(r["config"]["image_size"] == 64 for r in by_task[probe])

    # Two pre-training seeds give two checkpoints and distinguishable records.
    rils = {r["seed"]: r for r in runs if r["method"] == "rils"}
    assert rils[0]["checkpoint"]["sha256"] != rils[1]["checkpoint"]["sha256"]
    linear = {r["checkpoint"]["pretrain_seed"]: r for r in by_task["linear"] if r["checkpoint"]["method"] == "rils"}
    assert set(linear) == {0, 1} and linear[0]["key"] != linear[1]["key"]

    # Every table has every method's row; the summary's numbers are the detail's (one set in --quick).
    readme = (results / "README.md").read_text()
    summary = pd.read_csv(results / "summary.csv")
    assert set(summary["method"]) == METHODS | {"random", "pixels"}
    columns = {"1-shot", "linear", "kNN", "zero-shot", "i2t R@1", "box AP", "mask AP", "mIoU", "seg linear", "seg kNN"}
    assert columns <= set(summary["column"])
    assert all(f"| {m} |" in readme for m in METHODS | {"random", "pixels"})
    detail = (results / "study.md").read_text()
    for _, row in summary[summary["column"].isin(["1-shot", "linear", "kNN"])].iterrows():
        assert f"| {row['method']} |" in detail and f"{row['mean']:.2f} ± {row['std']:.2f} ({row['n']})" in detail
    for name in (
        "fewshot.png",
        "pretrain_curves.png",
        "dense.md",
        "dense_probes.md",
        "retrieval.md",
        "classification.md",
    ):
        assert (results / name).stat().st_size > 0
    seconds = json.loads((results / "study.json").read_text())["seconds"]
    assert set(seconds) == {"pretrain", "eval", "dense-coco", "dense-ade"}

    # Resumed: nothing is redone.
    before = snapshot(results)
    logs = {p: p.stat().st_size for p in work.rglob("pretrain.log")}
    capsys.readouterr()
    assert main(argv) == 0
    assert snapshot(results) == before
    assert {p: p.stat().st_size for p in work.rglob("pretrain.log")} == logs
    assert "skipped" in capsys.readouterr().err

    # Interrupted after one run's checkpoint was exported but before its run file, and after part of the
    # evaluation: only that is redone (the export is reused, not retrained).
    lost_run = results / "runs" / "clip-seed1.json"
    lost_run.unlink()
    sha = rils[0]["checkpoint"]["sha256"]
    lost = [
        p
        for p in (results / "records" / "fewshot").rglob("*.json")
        if json.loads(p.read_text())["checkpoint"]["sha256"] == sha
    ]
    for p in lost:
        p.unlink()
    kept = {p: t for p, t in snapshot(results).items()}
    assert main(argv) == 0
    after = snapshot(results)
    assert all(after[p] == t for p, t in kept.items())  # nothing else rewritten
    assert lost_run.is_file() and all(p.is_file() for p in lost)
    assert {p: p.stat().st_size for p in work.rglob("pretrain.log")} == logs
