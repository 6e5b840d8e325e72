"""The evaluation subcommands end to end on the tiny `shapes` set: records written once, bad input refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from eval_helpers import make_checkpoint, run_cli
from PIL import Image

from rils_bench.fileio import sha256_of
from rils_bench.precision import resolve
from rils_bench.report.record import read_records, record_key

FAST = ["--batch-size", "8", "--workers", "0", "--device", "cpu"]


def records_of(tmp_path, task=None):
    return read_records(tmp_path / "records", task=task)


def test_fewshot_prints_a_table_and_writes_one_record_per_k(rils_ckpt, tmp_path, capsys):
    argv = ["fewshot", "--ckpt", str(rils_ckpt), "--dataset", "shapes", "--shots", "2,1", "--seeds", "3", *FAST]
    assert run_cli(argv) == 0
    out, err = capsys.readouterr()
    assert "few-shot top-1 (%) on shapes val (16 images)" in out and "wrote 2 record(s)" in out
    assert "2-fold stratified CV in the 2-shot set (leave-one-per-class-out)" in err
    assert "1 image per class leaves nothing to cross-validate on" in err
    records = records_of(tmp_path, "fewshot")
    assert sorted(r["config"]["shots"] for r in records) == [1, 2]
    for r in records:
        accs = r["per_seed"]["top1"]
        assert r["seeds"] == [0, 1, 2] and len(accs) == 3 and len(r["hyperparameters"]["C"]) == 3
        assert r["metrics"]["top1"] == pytest.approx(np.mean(accs))
        assert r["metrics"]["top1_std"] == pytest.approx(np.std(accs, ddof=1))
        assert all(a * 16 / 100 == pytest.approx(round(a * 16 / 100)) for a in accs)  # k correct of 16 images
        assert r["checkpoint"]["sha256"] == sha256_of(rils_ckpt) and r["checkpoint"]["method"] == "rils"
        assert r["dataset_sha256"] and r["split"] == "val" and r["config"]["n_train"] == 8 * r["config"]["shots"]
        assert r["git_sha"] and r["date"] and r["rils_bench_version"]
    first = {p.name: json.loads(p.read_text())["per_seed"] for p in (tmp_path / "records").rglob("*.json")}
    assert run_cli(argv) == 0  # the same evaluation again: same files, replaced, not duplicated
    again = {p.name: json.loads(p.read_text())["per_seed"] for p in (tmp_path / "records").rglob("*.json")}
    assert again == first


def test_the_other_tasks_write_their_records(rils_ckpt, tmp_path, capsys):
    ckpt = ["--ckpt", str(rils_ckpt)]
    assert run_cli(["linear", *ckpt, "--dataset", "shapes", *FAST]) == 0
    assert run_cli(["knn", *ckpt, "--dataset", "shapes", "--feature", "cls", *FAST]) == 0
    assert run_cli(["zeroshot", *ckpt, "--dataset", "shapes", "--templates", "simple", *FAST]) == 0
    assert run_cli(["retrieval", *ckpt, "--dataset", "shapes", *FAST]) == 0
    out = capsys.readouterr().out
    assert "linear (logreg, gap) top-1 on shapes val" in out and "shapes-val (16 pairs): i2t_R@1" in out
    tasks = {(r["task"], r["dataset"]): r for r in records_of(tmp_path)}
    assert set(tasks) == {("linear", "shapes"), ("knn", "shapes"), ("zeroshot", "shapes"), ("retrieval", "shapes-val")}
    assert tasks["linear", "shapes"]["hyperparameters"]["C_selection"].startswith("chosen on a stratified held-out")
    assert tasks["knn", "shapes"]["setting"] == "k=20,T=0.07,cls"
    assert tasks["zeroshot", "shapes"]["hyperparameters"]["example_prompt"] == "itap of a circle."
    assert set(tasks["retrieval", "shapes-val"]["metrics"]) == {
        f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)
    }


def bad_inputs(ckpt, tmp_path) -> dict[str, tuple[list[str], str]]:
    root = tmp_path / "empty-class"
    for split in ("train", "val"):
        for folder in ("a", "b"):
            (root / split / folder).mkdir(parents=True)
            if not (split == "train" and folder == "b"):
                Image.new("L", (8, 8)).save(root / split / folder / "0.png")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    corrupt = {}
    for kind, damage in {
        "truncated": lambda png: png.write_bytes(png.read_bytes()[:60]),
        "empty": lambda png: png.write_bytes(b""),
        "text": lambda png: png.write_text("this is not a picture"),
    }.items():
        folder = tmp_path / f"corrupt-{kind}"
        for split in ("train", "val"):
            for name in ("a", "b"):
                (folder / split / name).mkdir(parents=True)
                Image.new("RGB", (32, 32), (40 * len(name), 90, 200)).save(folder / split / name / "0.png")
        damage(folder / "val" / "b" / "0.png")
        corrupt[f"{kind} image"] = (
            ["zeroshot", "--dataset", f"imagefolder:{folder}"],
            str(folder / "val" / "b" / "0.png"),
        )
    unknown_model = tmp_path / "unknown-model.pt"
    raw = torch.load(ckpt, weights_only=True)
    raw["meta"]["model_config"]["name"] = "vit_giant_from_the_future"
    torch.save(raw, unknown_model)
    return {
        **corrupt,
        "batch 0": (["fewshot", "--shots", "1", "--batch-size", "0"], "expected a positive integer"),
        "workers -1": (["linear", "--workers", "-1"], "expected 0 or a positive integer"),
        "epochs 0": (["linear", "--classifier", "sgd", "--epochs", "0"], "expected a positive integer"),
        "seeds x": (["fewshot", "--seeds", "x"], "expected an integer"),
        "device bogus": (["knn", "--device", "bogus"], "unknown device 'bogus'"),
        "unknown model": (["knn", "--ckpt", str(unknown_model)], "unknown model 'vit_giant_from_the_future'"),
        "shots 0": (["fewshot", "--shots", "0"], "positive integers"),
        "shots a": (["fewshot", "--shots", "a"], "positive integers"),
        "k too large": (["fewshot", "--shots", "1,6"], "6-shot needs 6 training images per class"),
        "unknown dataset": (["fewshot", "--shots", "1", "--dataset", "nope"], "unknown dataset 'nope'"),
        "missing ckpt": (["fewshot", "--shots", "1", "--ckpt", str(tmp_path / "no.pt")], "checkpoint not found"),
        "not a ckpt": (["linear", "--ckpt", str(tmp_path / "junk.pt")], "expected a rils-bench checkpoint or a timm"),
        "empty class": (["knn", "--dataset", f"imagefolder:{root}"], "empty class"),
        "image-only": (["zeroshot", "--ckpt", str(make_checkpoint(tmp_path / "mae.pt", "mae"))], "needs a text tower"),
    }


BAD = [
    "shots 0",
    "shots a",
    "k too large",
    "unknown dataset",
    "missing ckpt",
    "not a ckpt",
    "empty class",
    "image-only",
    "truncated image",
    "empty image",
    "text image",
    "batch 0",
    "workers -1",
    "epochs 0",
    "seeds x",
    "device bogus",
    "unknown model",
]


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, rils_ckpt, tmp_path, capsys):
    argv, message = bad_inputs(rils_ckpt, tmp_path)[name]
    defaults = {"--ckpt": str(rils_ckpt), "--dataset": "shapes"}
    for flag, value in defaults.items():
        if flag not in argv:
            argv += [flag, value]
    assert run_cli(argv) == 2, name
    err = capsys.readouterr().err.strip()
    assert err.startswith("rils-bench: error: ") and message in err and "\n" not in err, err
    # No feature was cached (the folder may hold `file-hashes/`, the dataset hash's per-file cache).
    assert not (tmp_path / "records").exists() and not list(tmp_path.glob("features/*.npz"))


def test_without_ckpt_the_latest_export_is_used_and_named(tmp_path, monkeypatch, capsys):
    """`rils-bench zeroshot` with no --ckpt takes the newest `work_dirs/**/export/*.pth` and says which."""
    import os

    monkeypatch.chdir(tmp_path)
    assert run_cli(["zeroshot", "--dataset", "shapes", *FAST]) == 2
    assert "no exported checkpoint under work_dirs/" in capsys.readouterr().err
    old = make_checkpoint(tmp_path / "work_dirs" / "a" / "export" / "pretrained.pth", seed=1)
    new = make_checkpoint(tmp_path / "work_dirs" / "b" / "export" / "pretrained.pth", seed=2)
    os.utime(old, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))  # `old` written last
    assert run_cli(["zeroshot", "--dataset", "shapes", "--templates", "simple", *FAST]) == 0
    assert f"no --ckpt: using the most recent export, {os.path.join('work_dirs', 'a', 'export', 'pretrained.pth')}" in (
        capsys.readouterr().err
    )
    (record,) = records_of(tmp_path, "zeroshot")
    assert record["checkpoint"]["sha256"] == sha256_of(old) != sha256_of(new)


def test_without_dataset_every_builtin_classification_set_is_evaluated(rils_ckpt, tmp_path, monkeypatch):
    from rils_bench.eval import datasets

    assert set(datasets.DEFAULT_CLASSIFICATION_SETS) == set(datasets.CLASSIFICATION_SETS) - {"shapes"}  # real sets
    monkeypatch.setattr(datasets, "DEFAULT_CLASSIFICATION_SETS", ("shapes",))  # the real sets need downloads
    assert run_cli(["knn", "--ckpt", str(rils_ckpt), *FAST]) == 0
    assert [r["dataset"] for r in records_of(tmp_path, "knn")] == ["shapes"]


def test_record_keys_keep_different_experiments_apart_and_a_rerun_says_it_replaces(rils_ckpt, tmp_path, capsys):
    ckpt = ["--ckpt", str(rils_ckpt), *FAST]
    folders = []
    for parent, shade in (("a", 60), ("b", 200)):  # two folders named x, different images
        folder = tmp_path / parent / "x"
        for split in ("train", "val"):
            for c, name in enumerate(("cat", "dog")):
                (folder / split / name).mkdir(parents=True)
                for i in range(2):
                    Image.new("RGB", (32, 32), (shade, 40 * c, 30 * i)).save(folder / split / name / f"{i}.png")
        folders.append(folder)
    for folder in folders:
        assert run_cli(["knn", *ckpt, "--dataset", f"imagefolder:{folder}", "--k", "1"]) == 0
    assert run_cli(["fewshot", *ckpt, "--dataset", "shapes", "--shots", "1", "--seeds", "1"]) == 0
    assert run_cli(["fewshot", *ckpt, "--dataset", "shapes", "--shots", "1", "--seeds", "2"]) == 0
    assert len(records_of(tmp_path, "knn")) == 2  # /a/x and /b/x are different data
    assert sorted(len(r["seeds"]) for r in records_of(tmp_path, "fewshot")) == [1, 2]  # a smoke run replaces nothing
    capsys.readouterr()
    assert run_cli(["knn", *ckpt, "--dataset", f"imagefolder:{folders[0]}", "--k", "1"]) == 0
    replaced = [line for line in capsys.readouterr().err.splitlines() if "replacing record" in line]
    assert len(replaced) == 1 and len(records_of(tmp_path, "knn")) == 2


def test_a_record_carries_its_precision_and_bf16_does_not_replace_fp32(rils_ckpt, tmp_path):
    ckpt = ["--ckpt", str(rils_ckpt), *FAST, "--dataset", "shapes"]
    for precision in ("fp32", "bf16"):
        assert run_cli(["zeroshot", *ckpt, "--precision", precision]) == 0
    assert run_cli(["zeroshot", *ckpt]) == 0  # auto: replaces the record of what it resolves to here
    records = {r["precision"]: r for r in records_of(tmp_path, "zeroshot")}
    assert sorted(records) == ["bf16", "fp32"] and records["bf16"]["key"] != records["fp32"]["key"]
    auto = resolve("auto", "cpu").name
    assert records[auto]["checkpoint"]["pretrain_precision"] == "fp32"  # make_checkpoint's meta names none
    unchanged = record_key(
        checkpoint_sha256=sha256_of(rils_ckpt), checkpoint_spec=str(rils_ckpt), task="zeroshot", dataset="shapes",
        split="val", setting=records["fp32"]["setting"], dataset_sha256=records["fp32"]["dataset_sha256"],
    )  # fmt: skip
    assert records["fp32"]["key"] == unchanged  # fp32 keys are those of records written before precisions
