"""`shapes`: every format written, readable by the real readers (pycocotools, webdataset tar, mmdet, mmseg)."""

from __future__ import annotations

import csv
import json
import re
import tarfile

import numpy as np
import pytest
from PIL import Image
from scene_checks import (
    check_coco_annotations,
    check_semantic_matches_coco,
    classes,
    coco_self_ap,
    load_coco,
    mmdet_sample,
    mmseg_sample,
)

from rils_bench.data.builtin import prepare, shapes

N = {"train": 40, "val": 16}  # shapes.DEFAULTS


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    return prepare.prepare("shapes", root=tmp_path_factory.mktemp("shapes-data"))


def test_defaults_are_the_sizes_tested_here():
    expected = {"n_train": N["train"], "n_val": N["val"], "image_size": 64}
    assert expected == shapes.DEFAULTS


def test_draw_shape_masks():
    disc = shapes.draw_shape("circle", (1, 2, 3), size=41)[..., 3] > 0
    assert disc.shape == (41, 41) and abs(disc.sum() - np.pi * 20.5**2) < 0.05 * disc.sum()
    ring = shapes.draw_shape("ring", (1, 2, 3), size=41)[..., 3] > 0
    assert not ring[20, 20] and ring[20, 1] and ring.sum() < disc.sum()
    square = shapes.draw_shape("square", (9, 9, 9), size=41)
    assert square.shape[:2] == (33, 33) and (square[..., 3] == 255).all() and (square[..., :3] == 9).all()
    with pytest.raises(ValueError, match="unknown shape"):
        shapes.draw_shape("blob", (0, 0, 0))


def test_imagefolder(shapes_root):
    root = shapes_root / "imagefolder"
    assert classes(root / "classnames.json") == list(shapes.SHAPES)
    for split, n in N.items():
        folders = sorted(p.name for p in (root / split).iterdir())
        assert folders == [f"{k:02d}_{name}" for k, name in enumerate(shapes.SHAPES)]
        per_class = [len(list((root / split / f).glob("*.png"))) for f in folders]
        assert per_class == [n // 8] * 8  # 40 and 16 split evenly over the 8 shapes
        image = Image.open(next((root / split / folders[0]).glob("*.png")))
        assert image.size == (64, 64) and image.mode == "RGB"
    manifest = prepare.read_manifest(shapes_root)
    assert manifest["counts"]["imagefolder"]["val"] == {name: 2 for name in shapes.SHAPES}


def test_imagetext_table_and_shards_agree(shapes_root):
    root = shapes_root / "imagetext"
    pattern = re.compile(rf"a ({'|'.join(shapes.COLOURS)}) ({'|'.join(shapes.SHAPES)})")
    for split, n in N.items():
        with open(root / f"{split}.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n and set(rows[0]) == {"filepath", "caption", "source"}
        for row in rows:
            colour = pattern.fullmatch(row["caption"]).group(1)
            pixels = np.asarray(Image.open(root / row["filepath"]))
            # The interior of the pasted shape keeps its exact colour; the noisy grey background never has it.
            assert (pixels == shapes.COLOURS[colour]).all(axis=-1).sum() >= 20, row
        with tarfile.open(root / "shards" / f"{split}-000000.tar") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        assert len(members) == 2 * n
        for i, row in enumerate(rows):
            key = f"{split}-{i:06d}"
            assert members[f"{key}.txt"].decode() == row["caption"]
            assert members[f"{key}.png"] == (root / row["filepath"]).read_bytes()


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_masks_boxes_and_self_ap(shapes_root, split):
    coco = load_coco(shapes_root / "coco" / "annotations" / f"instances_{split}.json")
    assert [c["name"] for c in coco.loadCats(sorted(coco.cats))] == list(shapes.SHAPES)
    assert sorted(coco.cats) == list(range(1, 9)) and len(coco.imgs) == N[split]
    n_annotations = check_coco_annotations(coco, shapes_root / "coco" / split)
    manifest = prepare.read_manifest(shapes_root)["counts"]["coco"][split]
    assert manifest["instances"] == n_annotations == sum(manifest["per_class"].values()) >= N[split]
    assert coco_self_ap(coco) == (1.0, 1.0)


def test_ade_tree_is_the_same_scenes_as_coco(shapes_root):
    ade = shapes_root / "ade"
    assert classes(ade / "classes.json") == ["background", *shapes.SHAPES]
    for split, ade_split in (("train", "training"), ("val", "validation")):
        coco = load_coco(shapes_root / "coco" / "annotations" / f"instances_{split}.json")
        check_semantic_matches_coco(coco, ade / "annotations" / ade_split, sorted(coco.imgs))
        names = sorted(p.name for p in (ade / "images" / ade_split).iterdir())
        assert names == sorted(p.name for p in (ade / "annotations" / ade_split).iterdir())
        assert all(
            (ade / "images" / ade_split / name).read_bytes() == (shapes_root / "coco" / split / name).read_bytes()
            for name in names
        )


def test_same_seed_same_bytes_other_seed_differs(shapes_root, tmp_path):
    first = prepare.read_manifest(shapes_root)["content_sha256"]
    assert first == prepare.content_sha256(shapes_root)[0]
    again = prepare.prepare("shapes", root=tmp_path / "again")
    assert prepare.read_manifest(again)["content_sha256"] == first
    other = prepare.prepare("shapes", root=tmp_path / "other", seed=1)
    assert prepare.read_manifest(other)["content_sha256"] != first


def test_ade_labels_stay_in_range(shapes_root):
    labels = [np.asarray(Image.open(p)) for p in sorted((shapes_root / "ade" / "annotations").rglob("*.png"))]
    values = np.unique(np.concatenate([label.ravel() for label in labels]))
    assert len(labels) == 56 and values[0] == 0 and values[-1] <= len(shapes.SHAPES)
    assert json.loads((shapes_root / "manifest.json").read_text())["counts"]["ade"]["val"]["images"] == 16


def test_mmdet_and_mmseg_read_the_trees(shapes_root):
    coco = load_coco(shapes_root / "coco" / "annotations" / "instances_train.json")
    n, sample = mmdet_sample(shapes_root / "coco", "train", list(shapes.SHAPES), index=3)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[4]))
    assert n == N["train"] and sample["img"].shape == (64, 64, 3)
    assert sample["gt_bboxes_labels"].tolist() == [a["category_id"] - 1 for a in anns]
    np.testing.assert_array_equal(sample["gt_masks"].masks, np.stack([coco.annToMask(a) for a in anns]))
    names = classes(shapes_root / "ade" / "classes.json")
    n, sample = mmseg_sample(shapes_root / "ade", "validation", names, reduce_zero_label=False, index=2)
    expected = np.asarray(Image.open(shapes_root / "ade" / "annotations" / "validation" / "000002.png"))
    assert n == N["val"] and sample["gt_seg_map"].max() <= len(shapes.SHAPES)
    np.testing.assert_array_equal(sample["gt_seg_map"], expected)
