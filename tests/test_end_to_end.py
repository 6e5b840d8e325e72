"""The whole path at the smallest size: pre-train 2 iterations -> export -> few-shot and zero-shot on the export ->
the tables, whose row names the export's sha256. Every piece is the real one (mmengine, the CLI, pandas)."""

from __future__ import annotations

import pytest

from rils_bench.cli import main
from rils_bench.data.builtin.prepare import prepare
from rils_bench.fileio import sha256_of
from rils_bench.train.runner import run_pretrain


@pytest.mark.slow
def test_pretrain_export_evaluate_table(tmp_path, monkeypatch):
    data = tmp_path / "data"
    prepare("shapes", root=data)
    monkeypatch.setenv("RILS_BENCH_DATA", str(data))
    monkeypatch.setenv("RILS_BENCH_FEATURES", str(tmp_path / "features"))
    records = tmp_path / "records"
    options = {
        "model.arch": "rils_vit_test_patch8",
        "train_dataloader.dataset": dict(
            _delete_=True, type="ImageTextPairs", table=str(data / "shapes" / "imagetext" / "train.csv"), image_size=32
        ),
        "train_dataloader.batch_size": 4,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "train_cfg.max_iters": 3,
    }
    export = run_pretrain(
        config="configs/pretrain/rils_vit-tiny-p8_builtin.py", work_dir=tmp_path / "run", cfg_options=options
    )
    fast = ["--dataset", "shapes", "--batch-size", "8", "--workers", "0", "--device", "cpu", "--records", str(records)]
    assert main(["fewshot", "--ckpt", str(export), "--shots", "1,2", "--seeds", "2", *fast]) == 0
    assert main(["zeroshot", "--ckpt", str(export), "--templates", "simple", *fast]) == 0
    assert main(["table", "--records", str(records), "--out", str(tmp_path / "results")]) == 0

    short = sha256_of(export)[:12]
    fewshot = (tmp_path / "results" / "fewshot.md").read_text()
    classification = (tmp_path / "results" / "classification.md").read_text()
    assert short in fewshot and "rils" in fewshot
    assert short in classification and "zero-shot" in classification.lower()
