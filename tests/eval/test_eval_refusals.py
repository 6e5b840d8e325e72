"""What a user gets wrong around an evaluation, and what the disk does to its caches: one line, exit 2, before
any feature is computed; nothing already written is replaced; a damaged cache entry is recomputed, said once."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from eval_helpers import run_cli
from PIL import Image

from rils_bench.eval.datasets import folder_sha256, resolve_classification


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("rils-bench: error: ") and "\n" not in err, err
    assert all(n in err for n in needles), err
    return err


def output_flags(tmp_path) -> dict[str, tuple[list[str], str]]:
    """Each output flag pointed at a file, and at a folder under a file."""
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    return {
        "records is a file": (["--records", str(a_file)], "not a directory"),
        "records under a file": (["--records", str(a_file / "records")], "is a file, not a directory"),
        "records name too long": (["--records", str(tmp_path / ("r" * 300))], "File name too long"),
    }


@pytest.mark.parametrize("case", ["records is a file", "records under a file", "records name too long"])
def test_an_unusable_records_folder_is_refused_before_extraction(case, rils_ckpt, tmp_path, capsys):
    flags, message = output_flags(tmp_path)[case]
    argv = ["fewshot", "--ckpt", str(rils_ckpt), "--dataset", "shapes", "--shots", "1", "--seeds", "1", *flags]
    assert run_cli(argv) == 2
    one_error_line(capsys, "--records", message)
    assert not (tmp_path / "features").exists()  # refused before any feature was computed
    assert (tmp_path / "a-file").read_text() == "keep me"


@pytest.mark.parametrize("target", ["file", "under a file"])
def test_table_out_that_cannot_be_a_folder_is_refused(target, rils_ckpt, tmp_path, capsys):
    assert run_cli(["knn", "--ckpt", str(rils_ckpt), "--dataset", "shapes", "--k", "3"]) == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    out = a_file if target == "file" else a_file / "tables"
    capsys.readouterr()
    assert run_cli(["table", "--records", str(tmp_path / "records"), "--out", str(out)]) == 2
    one_error_line(capsys, "--out")
    assert a_file.read_text() == "keep me"


def test_an_imagefolder_path_too_long_for_the_file_system_is_one_line(rils_ckpt, tmp_path, capsys):
    argv = ["knn", "--ckpt", str(rils_ckpt), "--dataset", f"imagefolder:{tmp_path / ('x' * 300) / 'set'}"]
    assert run_cli(argv) == 2
    one_error_line(capsys, "image folder not found")


@pytest.mark.parametrize("damage", ["truncated", "zero bytes"])
def test_a_damaged_feature_cache_is_recomputed_rewritten_and_said(damage, rils_ckpt, tmp_path, capsys):
    argv = ["knn", "--ckpt", str(rils_ckpt), "--dataset", "shapes", "--k", "3"]
    assert run_cli(argv) == 0
    capsys.readouterr()
    caches = sorted((tmp_path / "features").glob("*.npz"))
    assert len(caches) == 2  # train and val
    good = {path: np.load(path)["features"] for path in caches}
    for path in caches:
        path.write_bytes(path.read_bytes()[:100] if damage == "truncated" else b"")
    assert run_cli(argv) == 0
    err = capsys.readouterr().err
    assert sum("unreadable" in line and "recomputing" in line for line in err.splitlines()) == 2, err
    for path, features in good.items():  # rewritten whole: a third run reads them
        np.testing.assert_allclose(np.load(path)["features"], features, rtol=1e-5)
    assert run_cli(argv) == 0
    assert "unreadable" not in capsys.readouterr().err


def test_touching_a_file_keeps_the_folder_hash_and_rewriting_it_changes_it(tmp_path):
    root = tmp_path / "set"
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8), (10 * len(name), 0, 0)).save(root / split / name / "0.png")
    before = folder_sha256(root)
    image = root / "val" / "a" / "0.png"
    os.utime(image, ns=(0, image.stat().st_mtime_ns + 10**9))  # `touch`: new mtime, same bytes
    assert folder_sha256(root) == before
    assert resolve_classification(f"imagefolder:{root}").sha256 == before
    Image.new("RGB", (8, 8), (200, 0, 0)).save(image)  # new bytes
    assert folder_sha256(root) != before
    copy = shutil.copytree(root, tmp_path / "copy")  # same bytes elsewhere, fresh mtimes: same content hash
    assert folder_sha256(copy) == folder_sha256(root)


def test_touching_an_image_does_not_make_a_second_record(rils_ckpt, tmp_path, capsys):
    root = tmp_path / "set"
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (32, 32), (80 * len(name), 30 * i, 0)).save(root / split / name / f"{i}.png")
    argv = ["knn", "--ckpt", str(rils_ckpt), "--dataset", f"imagefolder:{root}", "--k", "3"]
    assert run_cli(argv) == 0
    image = root / "val" / "a" / "0.png"
    os.utime(image, ns=(0, image.stat().st_mtime_ns + 10**9))
    assert run_cli(argv) == 0
    assert len(list((tmp_path / "records").rglob("*.json"))) == 1
    assert "replacing record" in capsys.readouterr().err


@pytest.mark.parametrize(("row", "message"), [("a.png\n", "no caption (row 1"), ("a.png,\n", "empty caption (row 1")])
def test_a_retrieval_csv_row_without_a_caption_is_one_line(row, message, rils_ckpt, tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    table = tmp_path / "pairs.csv"
    table.write_text("filepath,caption\n" + row)
    assert run_cli(["retrieval", "--ckpt", str(rils_ckpt), "--dataset", f"csv:{table}"]) == 2
    one_error_line(capsys, message)
    assert not (tmp_path / "records").exists()
