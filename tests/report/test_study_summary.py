"""The study's aggregation by hand: pooled few-shot cells, the summary's average over sets, the noise rule, the floor
check, and the README that leads with the summary."""

from __future__ import annotations

import json
import statistics

import pandas as pd
import pytest

from rils_bench.report.record import SCHEMA
from rils_bench.report.study import (
    Cell,
    comparisons,
    exceeds_noise,
    floor_check,
    paired_differences,
    paired_floor_check,
    pooled,
    summary_cells,
    values_by_checkpoint,
)
from rils_bench.report.tables import build_tables


def record(method, sha, task, dataset, metrics, *, shots=None, per_seed=None, spec=None):
    config = {"feature": "gap", **({"shots": shots} if shots else {})}
    return {
        "schema": SCHEMA,
        "key": f"{sha}-{task}-{dataset}-{shots}",
        "task": task,
        "dataset": dataset,
        "split": "val",
        "setting": f"{shots}-shot,gap" if shots else "",
        "metrics": metrics,
        "per_seed": {"top1": per_seed} if per_seed else {},
        "seeds": list(range(len(per_seed or []))),
        "config": config,
        "checkpoint": {"spec": spec or f"/ckpt/{sha}.pth", "method": method, "arch": "tiny", "sha256": None if spec
                       else sha * 8, "text": "none" if method in ("mae", "pixels") else "clip", "steps": 350},
        "precision": "bf16",
        "git_sha": "abc",
    }  # fmt: skip


def few(method, sha, dataset, k, values, **kw):
    return record(method, sha, "fewshot", dataset, {"top1": statistics.fmean(values)}, shots=k, per_seed=values, **kw)


def lin(method, sha, dataset, top1, **kw):
    return record(method, sha, "linear", dataset, {"top1": top1}, **kw)


RANDOM = {"spec": "random:tiny"}
RECORDS = [
    few("rils", "a", "fashion", 1, [10, 20]), few("rils", "b", "fashion", 1, [30, 40]),
    few("rils", "a", "animal", 1, [20, 40]), few("rils", "b", "animal", 1, [50, 10]),
    lin("rils", "a", "fashion", 60), lin("rils", "b", "fashion", 62),
    lin("rils", "a", "animal", 70), lin("rils", "b", "animal", 74),
    lin("clip", "c", "fashion", 50), lin("clip", "d", "fashion", 51),
    lin("clip", "c", "animal", 60), lin("clip", "d", "animal", 62),
    few("clip", "c", "fashion", 1, [24, 26]), few("clip", "d", "fashion", 1, [25, 25]),
    few("random", "r", "fashion", 1, [1, 3], **RANDOM), few("random", "r", "animal", 1, [20, 30], **RANDOM),
]  # fmt: skip


def test_cells_pool_pretraining_and_probe_seeds():
    values = values_by_checkpoint(RECORDS)
    cell = pooled(values["rils", "fashion", "1-shot"])
    assert cell.values == (10, 20, 30, 40)
    assert cell.mean == 25 and cell.std == pytest.approx(statistics.stdev([10, 20, 30, 40]))
    assert str(Cell((1.0, 3.0))) == "2.00 ± 1.41 (2)"


def test_summary_averages_each_checkpoint_and_probe_seed_over_the_sets():
    summary = summary_cells(values_by_checkpoint(RECORDS), ["fashion", "animal"], [])
    # checkpoint a: seeds (10+20)/2 -> 15, (20+40)/2 -> 30; b: (30+50)/2 -> 40, (40+10)/2 -> 25.
    assert summary["rils"]["1-shot"].values == (15, 30, 40, 25)
    assert summary["rils"]["linear"].values == (65, 68)
    # The summary's means are the means of the per-set means.
    assert summary["rils"]["linear"].mean == statistics.fmean([statistics.fmean([60, 62]), statistics.fmean([70, 74])])
    assert "1-shot" not in summary["clip"]  # few-shot on one of the two sets only: no partial average
    assert list(summary) == ["rils", "clip", "random"]  # RILS first, floors last


def test_noise_rule_and_comparisons():
    assert exceeds_noise(Cell((10.0, 12.0)), Cell((5.0, 5.0)))  # 6 apart, stds 1.41 + 0
    assert exceeds_noise(Cell((10.0, 20.0)), Cell((5.0, 9.0))) is False  # 8 apart, stds 7.07 + 2.83
    assert exceeds_noise(Cell((10.0,)), Cell((5.0, 5.0))) is None  # one run: its noise is unknown
    summary = summary_cells(values_by_checkpoint(RECORDS), ["fashion", "animal"], [])
    lines = comparisons(summary)
    # clip per checkpoint (50 + 60) / 2 = 55 and (51 + 62) / 2 = 56.5: 66.5 - 55.75 = 10.75, stds 2.12 + 1.06.
    assert lines[0].startswith("- rils vs clip: linear +10.75 (beyond noise)")


def test_floor_check_counts_the_shots_beyond_noise():
    rows = floor_check(values_by_checkpoint(RECORDS), ["fashion", "animal"], "random")
    # fashion: 25 ± 12.91 against 2 ± 1.41 -> above; animal: 30 ± 18.26 against 25 ± 7.07 -> within the noise.
    assert rows[0] == {
        "method": "rils",
        "fashion": "above at 1/1 k, below at 0/1",
        "animal": "above at 0/1 k, below at 0/1",
    }
    assert rows[1]["method"] == "clip" and rows[1]["fashion"] == "above at 1/1 k, below at 0/1"


def test_paired_check_takes_the_floor_on_the_same_probe_seed():
    rows = paired_floor_check(values_by_checkpoint(RECORDS), ["fashion", "animal"], "random")
    # rils fashion: a (10, 20) and b (30, 40) minus random (1, 3) -> 9, 17, 29, 37: mean 23, std 12.44 -> above.
    # animal: (20, 40) and (50, 10) minus (20, 30) -> 0, 10, 30, -20: mean 5, std 20.82 -> within, no verdict.
    assert rows == {
        "fashion": {
            "rils": {"1-shot": "+23.0 ± 12.4 above"},
            "clip": {"1-shot": "+23.0 ± 0.8 above"},
        },  # 23, 23, 24, 22
        "animal": {"rils": {"1-shot": "+5.0 ± 20.8"}},  # clip has no animal few-shot records
    }


def test_pairing_removes_the_shared_luck_of_the_draw():
    method, floor = {"m": [10.0, 40.0, 70.0]}, {"r": [5.0, 34.0, 66.0]}
    assert exceeds_noise(pooled(method), pooled(floor)) is False  # 40 vs 35, stds 30 + 30.5: within unpaired
    diff = paired_differences(method, floor)
    assert diff.values == (5.0, 6.0, 4.0) and diff.mean > diff.std  # paired: 5 ± 1, beyond the noise
    assert paired_differences(method, {"r": [5.0, 34.0]}) is None  # probe seeds that do not pair
    assert paired_differences(method, {"r": [1.0] * 3, "s": [2.0] * 3}) is None  # which floor checkpoint?


def test_tables_lead_with_the_summary_and_its_csv_matches_the_detail(tmp_path):
    root = tmp_path / "records"
    for r in RECORDS:
        path = root / r["task"] / r["dataset"] / f"{r['key']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    out = tmp_path / "results"
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"datasets": ["fashion", "animal"], "in_domain": ["fashion"]}))
    build_tables(records=root, out=out)
    readme = (out / "README.md").read_text()
    assert readme.startswith("# Results\n\n## Summary") and readme.index("| rils |") < readme.index("## Detail")
    assert (
        "Against `random`, paired, fashion:\n\n| method | 1-shot |\n|---|---|\n| rils | +23.0 ± 12.4 above |" in readme
    )
    summary = pd.read_csv(out / "summary.csv")
    linear = summary[(summary["method"] == "rils") & (summary["column"] == "linear")].iloc[0]
    detail = (out / "study.md").read_text()
    assert "| rils | 25.00 ± 12.91 (4) | 61.00 ± 1.41 (2) |" in detail  # fashion: 1-shot, linear
    assert linear["mean"] == pytest.approx((61.0 + 72.0) / 2) and linear["n"] == 2
    assert (out / "fewshot.png").stat().st_size > 0 and not (out / "pretrain_curves.png").exists()


def test_an_encoder_without_few_shot_records_is_left_out_of_the_floor_check():
    from rils_bench.report.study import floor_check

    values = {
        ("rils", "fashion-mnist", "1-shot"): {"a": [50.0, 52.0]},
        ("random", "fashion-mnist", "1-shot"): {"r": [20.0, 22.0]},
        ("dinov2-s14", "segprobe", "seg linear"): {"d": [19.0]},
    }
    rows = floor_check(values, ["fashion-mnist"], "random")
    assert [r["method"] for r in rows] == ["rils"] and rows[0]["fashion-mnist"] == "above at 1/1 k, below at 0/1"
