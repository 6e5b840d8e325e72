"""Tables are built from records only: shapes, mean ± std cells, CSV round trips, determinism, the README."""

from __future__ import annotations

import pandas as pd
import pytest

from rils_bench.models.pretrained import PretrainedInfo
from rils_bench.report.record import HOLDOUT_SPLIT, make_record, read_records, write_record
from rils_bench.report.tables import build_tables, fewshot_frame

RILS = PretrainedInfo("runs/rils.pt", "rils-bench", "rils", "rils_vit_tiny_patch8", "a" * 64, steps=2000, seed=0)
RANDOM = PretrainedInfo("random:rils_vit_tiny_patch8", "random", "random", "rils_vit_tiny_patch8", None, seed=0)


def fewshot(info: PretrainedInfo, k: int, accs: list[float], dataset: str = "fashion-mnist") -> dict:
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5
    return make_record(
        checkpoint=info,
        task="fewshot",
        dataset=dataset,
        split="val",
        setting=f"{k}-shot,gap",
        metrics={"top1": mean, "top1_std": std},
        per_seed={"top1": accs},
        seeds=list(range(len(accs))),
        config={"shots": k, "feature": "gap"},
        git_sha="abc123",
    )


def simple(info: PretrainedInfo, task: str, dataset: str, metrics: dict, setting: str = "", config=None) -> dict:
    return make_record(
        checkpoint=info,
        task=task,
        dataset=dataset,
        split="val",
        setting=setting,
        metrics=metrics,
        config=config or {},
        git_sha="abc123",
    )


@pytest.fixture
def records(tmp_path):
    root = tmp_path / "records"
    for record in [
        fewshot(RILS, 1, [40.0, 44.0, 48.0]),
        fewshot(RILS, 4, [60.0, 62.0]),
        fewshot(RANDOM, 1, [20.0, 22.0]),
        fewshot(RANDOM, 4, [30.0, 30.0]),
        simple(RILS, "linear", "fashion-mnist", {"top1": 81.234, "top5": 99.0}, "logreg,gap", {"classifier": "x"}),
        simple(RILS, "knn", "fashion-mnist", {"top1": 70.0}, "k=20,T=0.07,gap", {"feature": "gap"}),
        simple(RANDOM, "zeroshot", "animal-mnist", {"top1": 10.0}, "templates=auto"),
        simple(
            RILS, "retrieval", "retrieval-emoji", {f"{d}_R@{k}": float(k) for d in ("i2t", "t2i") for k in (1, 5, 10)}
        ),
        simple(RILS, "coco", "pastecoco", {"bbox_mAP": 12.5, "segm_mAP": 10.0}),
        simple(RILS, "ade", "pasteade", {"mIoU": 33.3, "mAcc": 40.0, "aAcc": 80.0}),
    ]:
        write_record(record, root)
    return root


def test_records_round_trip_into_the_fewshot_frame(records):
    frame = fewshot_frame(read_records(records))
    assert frame.shape == (4, 12) and set(frame["text"]) == {"clip"}  # RANDOM and RILS: the CLIP text tower
    row = frame[(frame["method"] == "rils") & (frame["shots"] == 1)].iloc[0]
    assert row["top1_mean"] == 44.0 and row["top1_std"] == 4.0 and row["seeds"] == 3
    assert row["checkpoint"] == "a" * 12 and row["steps"] == 2000


def test_tables_have_the_right_shape_and_cells(records, tmp_path):
    out = tmp_path / "results"
    written = build_tables(records=records, out=out)
    names = {"fewshot", "classification", "retrieval", "dense"}
    assert {p.name for p in written} == {f"{n}.{e}" for n in names for e in ("md", "csv")} | {
        "fewshot.png",
        "README.md",
        "study.md",
        "summary.csv",
    }  # pretrain_curves.png only with run files (tests/report/test_study_summary.py)

    md = (out / "fewshot.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0] == "| method | arch | text | steps | checkpoint | precision | 1-shot | 4-shot |"
    assert len(table) == 4  # header, rule, 2 encoders
    assert (
        "| random | rils_vit_tiny_patch8 | clip | 0 | random:rils_vit_tiny_patch8 | fp32 "
        "| 21.00 ± 1.41 | 30.00 ± 0.00 |" in table
    )
    assert f"| rils | rils_vit_tiny_patch8 | clip | 2000 | {'a' * 12} | fp32 | 44.00 ± 4.00 | 61.00 ± 1.41 |" in table

    csv = pd.read_csv(out / "fewshot.csv")
    assert csv.shape == (4, 12) and csv["top1_mean"].tolist() == [
        21.0,
        30.0,
        44.0,
        61.0,
    ]  # sorted by method, then shots

    classification = (out / "classification.md").read_text()
    assert "## fashion-mnist" in classification and "## animal-mnist" in classification
    assert "| method | arch | text | steps | checkpoint | precision | kNN | linear |" in classification
    assert f"| rils | rils_vit_tiny_patch8 | clip | 2000 | {'a' * 12} | fp32 | 70.00 | 81.23 |" in classification
    cls_csv = pd.read_csv(out / "classification.csv")
    assert cls_csv.shape == (3, 10) and cls_csv["top5"].isna().sum() == 2

    retrieval = (out / "retrieval.md").read_text()
    assert "| i2t_R@1 | i2t_R@5 | i2t_R@10 | t2i_R@1 | t2i_R@5 | t2i_R@10 |" in retrieval
    dense = (out / "dense.md").read_text()
    assert "## pastecoco" in dense and "| bbox_mAP | segm_mAP |" in dense and "| 12.50 | 10.00 |" in dense
    assert "| mIoU | mAcc | aAcc |" in dense
    assert "| precision | seed | bbox_mAP |" in dense  # fine-tuning seeds tell runs of one checkpoint apart
    assert (out / "fewshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    readme = (out / "README.md").read_text()
    assert "Built from 10 record(s)" in readme and "`abc123`" in readme
    assert f"- rils, rils_vit_tiny_patch8, text tower clip, 2000 steps: `{'a' * 12}`" in readme


def test_a_train_holdout_record_stays_out_of_the_tables(records, tmp_path):
    """`dense --holdout` records justify a recipe; a table cell built from one would pass a train score for val."""
    holdout = simple(RANDOM, "ade", "pasteade", {"mIoU": 99.0, "mAcc": 99.0, "aAcc": 99.0})
    write_record({**holdout, "split": HOLDOUT_SPLIT}, records)
    build_tables(records=records, out=tmp_path / "results")
    assert "99.00" not in (tmp_path / "results" / "dense.md").read_text()
    assert "Built from 10 record(s)" in (tmp_path / "results" / "README.md").read_text()


def test_tables_are_deterministic(records, tmp_path):
    first = {p.name: p.read_bytes() for p in build_tables(records=records, out=tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in build_tables(records=records, out=tmp_path / "b")}
    assert first == second


def test_a_missing_or_empty_records_folder_is_refused_and_writes_nothing(tmp_path):
    from rils_bench.cli import main

    out = tmp_path / "out"
    assert main(["table", "--records", str(tmp_path / "typo"), "--out", str(out)]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["table", "--records", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert not out.exists()


def test_a_corrupt_or_incomplete_record_is_named_and_skipped(records, tmp_path, capsys):
    broken = records / "zeroshot" / "animal-mnist" / "0000broken.json"
    broken.write_text('{"schema": "rils_bench/record/v1", "task": ')
    incomplete = fewshot(RILS, 8, [50.0, 52.0])
    del incomplete["config"]["shots"]
    partial = write_record(incomplete, records)
    kept = read_records(records)
    assert len(kept) == 10 and all(r["key"] != incomplete["key"] for r in kept)
    err = sorted(capsys.readouterr().err.splitlines(), key=lambda line: str(broken) not in line)
    assert len(err) == 2 and str(broken) in err[0] and "not readable JSON" in err[0]
    assert str(partial) in err[1] and "config.shots" in err[1]
    written = build_tables(records=records, out=tmp_path / "out")  # the good records still make their tables
    assert (tmp_path / "out" / "fewshot.md") in written


def test_table_command_does_not_load_the_model_stack(records, tmp_path):
    """`rils-bench table` only reads JSON and writes tables: it must work (and start fast) without torch."""
    import subprocess
    import sys

    code = (
        "import sys; from rils_bench.cli import main; "
        f"rc = main(['table', '--records', {str(records)!r}, '--out', {str(tmp_path / 'out')!r}]); "
        "print(rc, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr
    assert (tmp_path / "out" / "fewshot.md").is_file()


def test_the_text_tower_is_part_of_a_rows_identity(tmp_path):
    minilm = PretrainedInfo(
        "runs/rils-minilm.pt", "rils-bench", "rils", "rils_vit_tiny_patch8", "b" * 64, steps=350,
        meta={"model_config": {"embed_dim": 256, "text_tower": "hf", "hf_model": "minilm"}},
    )  # fmt: skip
    scratch = PretrainedInfo(
        "runs/rils.pt", "rils-bench", "rils", "rils_vit_tiny_patch8", "c" * 64, steps=350,
        meta={"model_config": {"embed_dim": 256, "text_tower": "clip"}},
    )  # fmt: skip
    for info in (minilm, scratch):
        write_record(simple(info, "zeroshot", "fashion-mnist", {"top1": 50.0}, "templates=auto"), tmp_path / "r")
    build_tables(records=tmp_path / "r", out=tmp_path / "out")
    page = (tmp_path / "out" / "classification.md").read_text()
    assert "| rils | rils_vit_tiny_patch8 | hf:minilm | 350 | bbbbbbbbbbbb |" in page
    assert "| rils | rils_vit_tiny_patch8 | clip | 350 | cccccccccccc |" in page


def test_dense_probe_records_get_their_own_page_and_none_leaves_results_as_they_were(records, tmp_path):
    build_tables(records=records, out=tmp_path / "before")
    assert not (tmp_path / "before" / "dense_probes.md").exists()  # no probe records: no new page
    metrics = {"mIoU": 19.024, "mIoU_std": 0.19, "mAcc": 25.5, "aAcc": 83.8}
    write_record(simple(RILS, "segprobe", "pasteade", metrics, "linear,last,224px"), records)
    write_record(simple(RANDOM, "segknn", "pasteade", {**metrics, "mIoU": 10.1}, "k=30,T=0.02,bank=1,128px"), records)
    build_tables(records=records, out=tmp_path / "after")
    page = (tmp_path / "after" / "dense_probes.md").read_text()
    assert "## pasteade" in page and "| segprobe linear,last,224px | rils |" in page and "| 19.02 | 0.19 |" in page
    assert "| segknn k=30,T=0.02,bank=1,128px | random |" in page and "| 10.10 |" in page
    assert (tmp_path / "after" / "dense.md").read_text() == (tmp_path / "before" / "dense.md").read_text()
