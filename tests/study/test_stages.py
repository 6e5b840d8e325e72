"""The stages' bookkeeping without training: a missing run or checkpoint is one clear line, recorded units are
recognised, the seconds spent add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rils_bench.errors import UserError
from rils_bench.report.runs import RUN_SCHEMA, read_curves
from rils_bench.study import stages
from rils_bench.study.plan import load_study

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def study(tmp_path):
    return load_study(ROOT / "configs/study/default.py", quick=True, root=ROOT, work_dir=tmp_path / "w",
                      results=tmp_path / "r")  # fmt: skip


def test_eval_before_pretrain_and_a_vanished_checkpoint_are_one_line_each(study):
    with pytest.raises(UserError, match="rils-seed0 has not been pre-trained"):
        stages.eval_stage(study, log=lambda _: None)
    for run in study.runs:
        path = study.run_files / f"{run.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = {"path": str(run.work_dir / "export/pretrained.pth"), "sha256": "f" * 64, "steps": 3}
        path.write_text(json.dumps({"schema": RUN_SCHEMA, "checkpoint": checkpoint}))
    with pytest.raises(UserError, match=r"checkpoint of rils-seed0 \(ffffffffffff\) is gone from .*pretrained.pth"):
        stages.eval_stage(study, log=lambda _: None)


def test_a_recorded_unit_is_recognised_by_checkpoint_setting_seeds_and_precision(study, tmp_path):
    enc = stages.Encoder("x", "pixels:8", "pixels:8")
    units = stages.eval_units(study, enc)
    fewshot = units[0].key  # (ident, task, dataset, setting of the largest k, probe seeds)
    assert fewshot == ("pixels:8", "fewshot", "shapes", "2-shot,gap", (0, 1))
    checkpoint = {"spec": "pixels:8", "method": "pixels", "arch": "p", "sha256": None}
    record = {"schema": "rils_bench/record/v1", "task": "fewshot", "dataset": "shapes", "split": "val",
              "setting": "2-shot,gap", "metrics": {"top1": 1.0}, "config": {"shots": 2}, "seeds": [0, 1],
              "checkpoint": checkpoint, "precision": "bf16"}  # fmt: skip
    path = study.records / "fewshot" / "shapes" / "k.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    assert fewshot in stages.recorded(study.records, "bf16")
    assert fewshot not in stages.recorded(study.records, "fp32")  # another precision is another result


def test_seconds_add_up_per_stage_and_unit(study):
    stages.add_time(study, "eval", "rils-seed0", 1.5)
    stages.add_time(study, "eval", "rils-seed0", 2.0)
    stages.note_study(study, "rils-bench study x --quick")
    stages.note_study(study, "rils-bench study x --quick")
    state = json.loads((study.results / "study.json").read_text())
    assert state["seconds"]["eval"]["rils-seed0"] == 3.5 and state["commands"] == ["rils-bench study x --quick"]
    assert state["datasets"] == ["shapes"] and "cpus" in state["machine"]


def test_curves_merge_resumed_logs_and_keep_only_loss_terms(tmp_path):
    for stamp, rows in [("a", [(1, 3.0), (2, 2.5)]), ("b", [(2, 2.4), (3, 2.0)])]:  # b: resumed, re-logged step 2
        folder = tmp_path / stamp / "vis_data"
        folder.mkdir(parents=True)
        lines = [json.dumps({"step": s, "loss": v, "itc": v - 1, "lr": 0.1, "time": 1.0}) for s, v in rows]
        (folder / "scalars.json").write_text("\n".join(lines) + "\n{cut")
    curves = read_curves(tmp_path, batch_size=16)
    assert curves == {"step": [1, 2, 3], "images_seen": [16, 32, 48], "itc": [2.0, 1.4, 1.0], "loss": [3.0, 2.4, 2.0]}


@pytest.mark.slow
def test_a_dense_probe_unit_key_is_the_key_of_the_record_it_writes(study, monkeypatch, tmp_path):
    from rils_bench.data.builtin import prepare
    from rils_bench.eval.features import precision_of

    prepare.prepare("shapes", root=tmp_path / "data")
    monkeypatch.setenv("RILS_BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RILS_BENCH_FEATURES", str(tmp_path / "features"))
    enc = stages.Encoder("pixels:8", "pixels:8", "pixels:8")
    units = {u.key[1]: u for u in stages.eval_units(study, enc) if u.key[1] in ("segprobe", "segknn")}
    assert set(units) == {"segprobe", "segknn"}
    assert units["segprobe"].key == ("pixels:8", "segprobe", "shapes", "linear,last,64px", (0,))
    for unit in units.values():
        unit.run(ckpt=enc.spec, records=study.records)
    assert {u.key for u in units.values()} <= stages.recorded(study.records, precision_of(None))  # what auto picks


def test_an_anchor_gets_the_dense_probes_and_the_dense_stage_only(tmp_path):
    study = load_study(ROOT / "configs/study/default.py", root=ROOT, work_dir=tmp_path / "w", results=tmp_path / "r")
    assert study.anchors == ["reference:dinov2-s14"]
    for run in study.runs:
        path = study.run_files / f"{run.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"schema": RUN_SCHEMA, "checkpoint": {"path": "x.pth", "sha256": "f" * 64}}))
    assert [e.spec for e in stages.encoders(study)][-2:] == study.floors  # the classification evaluations' list
    (anchor,) = [e for e in stages.encoders(study, anchors=True) if e.spec in study.anchors]
    assert {u.key[1] for u in stages.anchor_units(study, anchor)} == {"segprobe", "segknn"}
    assert stages.is_named(anchor.spec) and not stages.is_floor(anchor.spec)
    # Fine-tuned: the seed-0 checkpoints (the config's dense.seeds), the random floor and the anchor.
    labels = [e.label for e in stages.dense_encoders(study)]
    assert labels == [f"{m}-seed0" for m in ("rils", "clip", "mae", "mae_clip", "semmim")] + [
        "random:rils_vit_tiny_patch8@32", "reference:dinov2-s14"]  # fmt: skip
