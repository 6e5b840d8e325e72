"""Bad samples in pre-training data are skipped, counted and named; too many stop the run with one line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import webdataset as wds
from pretrain_testing import tiny_options

from rils_bench.cli import main
from rils_bench.data.builtin.prepare import prepare
from rils_bench.train.runner import run_pretrain

pytestmark = pytest.mark.slow
CONFIGS = "configs/pretrain"


@pytest.fixture(scope="module")
def shapes_pairs(tmp_path_factory):
    root = prepare("shapes", root=tmp_path_factory.mktemp("data")) / "imagetext"
    with open(root / "train.csv", newline="", encoding="utf-8") as f:
        return [(str(root / row["filepath"]), row["caption"]) for row in csv.DictReader(f)]


def write_table(folder, pairs, n_rows, n_bad):
    """`n_rows` rows cycling over real pairs; the last `n_bad` are broken in turn: a missing file, a truncated PNG,
    a text file named .png, a caption that is not UTF-8."""
    folder.mkdir(parents=True, exist_ok=True)
    png = Path(pairs[0][0]).read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 3])
    (folder / "text.png").write_text("not a picture")
    lines = [b"filepath,caption"]
    for i in range(n_rows):
        path, caption = pairs[i % len(pairs)]
        if i >= n_rows - n_bad:
            kind = (i - (n_rows - n_bad)) % 4
            path = [str(folder / "missing.png"), str(folder / "truncated.png"), str(folder / "text.png"), path][kind]
            caption = caption if kind < 3 else "caf\xe9"
        line = f'{path},"{caption}"'.encode("latin-1" if caption.endswith("\xe9") else "utf-8")
        lines.append(line)
    table = folder / "pairs.csv"
    table.write_bytes(b"\n".join(lines) + b"\n")
    return table


def options(table, iters):
    return tiny_options(table, iters, **{"default_hooks.logger.interval": 5})


def test_a_one_percent_bad_table_trains_to_the_end_and_counts_the_skip(shapes_pairs, tmp_path, capsys):
    table = write_table(tmp_path / "data", shapes_pairs, n_rows=100, n_bad=1)
    # 25 steps of 4 = one pass over the 100 rows: the bad row is met exactly once.
    export = run_pretrain(
        config=f"{CONFIGS}/clip_vit-tiny-p8_builtin.py", work_dir=tmp_path / "run", cfg_options=options(table, 25)
    )
    meta = torch.load(export, weights_only=True)["meta"]
    assert meta["skipped_samples"] == 1 and meta["steps"] == 25
    named = [line for line in capsys.readouterr().err.splitlines() if "skipped bad sample" in line]
    assert len(named) == 1 and "missing.png" in named[0] and "row 100" in named[0]


def test_a_ten_percent_bad_table_stops_with_one_line(shapes_pairs, tmp_path, capsys):
    table = write_table(tmp_path / "data", shapes_pairs, n_rows=100, n_bad=10)
    argv = ["pretrain", f"{CONFIGS}/clip_vit-tiny-p8_builtin.py", "--work-dir", str(tmp_path / "run"), "--cfg-options"]
    argv += [f"{k}={v}" for k, v in options(table, 30).items() if k != "train_dataloader.dataset"]
    argv += [f"train_dataloader.dataset.table={table}", "train_dataloader.dataset.builtin=None"]
    argv += ["train_dataloader.dataset.image_size=32"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "were bad and skipped, more than the limit of 1 %" in err[-1] and err[-1].startswith("rils-bench: error:")
    named = [line for line in err if "skipped bad sample" in line]
    assert len(named) == 5  # the first few, one line each, naming file/row
    assert any("not UTF-8" in line for line in named) and any("truncated.png" in line for line in named)
    assert not (tmp_path / "run" / "export").exists()


def test_corrupt_shard_members_and_a_cut_tar_are_skipped_and_counted(shapes_pairs, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(2):
        with wds.TarWriter(str(shards / f"{s:05d}.tar")) as sink:
            for i, (path, caption) in enumerate(shapes_pairs[:30]):
                sample = {"__key__": f"{s}-{i:04d}", "png": Path(path).read_bytes(), "txt": caption}
                if s == 0 and i == 3:
                    sample["png"] = b"\x89PNG broken"
                if s == 0 and i == 7:
                    del sample["txt"]
                sink.write(sample)
    cut = shards / "00001.tar"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2 + 100])
    cfg = {
        "model.arch": "rils_vit_test_patch8",
        "train_dataloader.dataset.urls": sorted(str(p) for p in shards.glob("*.tar")),
        "train_dataloader.dataset.num_samples": 44,
        "train_dataloader.dataset.image_size": 32,
        "train_dataloader.dataset.shuffle_buffer": 0,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "global_batch": 4,
        "optim_wrapper": dict(type="OptimWrapper", _delete_=True, optimizer=dict(type="AdamW", lr=1e-4)),
        "custom_hooks": [dict(type="BadSampleHook", limit=0.2), dict(type="ExportCheckpointHook")],
        "train_cfg.max_iters": 10,
    }
    export = run_pretrain(config=f"{CONFIGS}/clip_vit-base-p16_laion20m.py", work_dir=tmp_path / "run", cfg_options=cfg)
    meta = torch.load(export, weights_only=True)["meta"]
    assert meta["steps"] == 10 and meta["skipped_samples"] >= 3  # a bad PNG, a sample without caption, the cut
