"""`pastecoco` / `pasteade`: class choice, hold-out, and the written sets read by pycocotools, mmdet and mmseg.

The prepared sets are small (24 train, 8 val scenes) so that a build takes seconds; the cut-out pools
are the real ones, whatever the scene count.
"""

from __future__ import annotations

import hashlib

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

from rils_bench.data.builtin import fetch, paste, prepare
from rils_bench.data.builtin.sources import Item

SMALL = {"n_train": 24, "n_val": 8}
N_CLASSES = len(paste.CLASSES)


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory):
    return prepare.prepare("pastecoco", root=tmp_path_factory.mktemp("pastecoco"), options=SMALL)


@pytest.fixture(scope="session")
def ade_root(tmp_path_factory):
    return prepare.prepare("pasteade", root=tmp_path_factory.mktemp("pasteade"), options=SMALL)


def _item(source: str, key: str, caption: str = "x", subcategory: str = "") -> Item:
    return Item(source=source, key=key, png=b"", caption=caption, category="", subcategory=subcategory)


def test_class_index_of_known_items():
    names = list(paste.CLASSES)
    assert paste.class_index(_item("tuxpaint", "animals/birds/owl.png")) == names.index("bird")
    assert paste.class_index(_item("tuxpaint", "plants/lavender.png")) == names.index("plant")
    assert paste.class_index(_item("tuxpaint", "animals/birds/cartoon/tux.png")) is None  # drawn, not a photo
    assert paste.class_index(_item("tuxpaint", "vehicles/7spoke256.png")) is None  # a wheel, excluded
    assert paste.class_index(_item("tuxpaint", "symbols/math/plus.png")) is None
    assert paste.class_index(_item("emoji-twitter", "1f98a.png", "fox", "animal-mammal")) == names.index("mammal")
    assert paste.class_index(_item("emoji-twitter", "1f43e.png", "paw prints", "animal-mammal")) is None
    assert paste.class_index(_item("emoji-twitter", "1f6a2.png", "ship", "transport-water")) == names.index("vehicle")


def test_usable_rejects_rectangles_and_invisible_stamps():
    disc = np.zeros((20, 20, 4), np.uint8)
    yy, xx = np.mgrid[:20, :20]
    disc[..., 3] = np.where((yy - 10) ** 2 + (xx - 10) ** 2 < 64, 255, 0)
    assert paste.usable(disc)
    assert not paste.usable(np.full((20, 20, 4), 255, np.uint8))  # opaque rectangle
    faint = disc.copy()
    faint[..., 3] //= 3  # alpha 85 < 128 everywhere: no mask
    assert not paste.usable(faint)
    line = np.zeros((40, 40, 4), np.uint8)
    line[np.arange(40), np.arange(40), 3] = 255  # a diagonal line fills 1/40 of its box
    assert not paste.usable(line)


def test_background_photos_and_crops():
    photos = paste.background_photos()
    assert len(photos) == len(paste.BACKGROUNDS)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos)
    crops = [paste.random_crop(photos[0], 96, np.random.default_rng(3)) for _ in range(2)]
    assert crops[0].shape == (96, 96, 3) and np.array_equal(crops[0], crops[1])


@pytest.mark.slow
def test_val_cutouts_are_held_out():
    archives = {s: fetch.fetch(fetch.SOURCES[s]) for s in ("tuxpaint-stamps-default", "emoji-datasource-twitter")}
    pools = paste.cutout_pools(archives, seed=0, longest=256)

    def digests(split):
        return {
            hashlib.sha256(a.tobytes() + str(a.shape).encode()).hexdigest() for c in pools[split] for g in c for a in g
        }

    train, val = digests("train"), digests("val")
    assert not train & val
    assert 0.2 < len(val) / (len(train) + len(val)) < 0.3  # VAL_FRACTION, rounded per (class, source)
    # Every class has both photo and emoji cut-outs on both sides of the split.
    assert all(len(groups) == 2 for split in pools for groups in pools[split])


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "val"])
def test_pastecoco_annotations_and_self_ap(coco_root, split):
    assert classes(coco_root / "classes.json") == list(paste.CLASSES)
    coco = load_coco(coco_root / "annotations" / f"instances_{split}.json")
    assert sorted(coco.cats) == list(range(1, N_CLASSES + 1)) and len(coco.imgs) == SMALL[f"n_{split}"]
    n = check_coco_annotations(coco, coco_root / split)
    counts = prepare.read_manifest(coco_root)["counts"][split]
    assert counts["images"] == SMALL[f"n_{split}"] and counts["instances"] == n == sum(counts["per_class"].values())
    assert n >= SMALL[f"n_{split}"]  # every scene keeps its first cut-out
    assert coco_self_ap(coco) == (1.0, 1.0)
    assert Image.open(coco_root / split / "000000.png").size == (256, 256)


@pytest.mark.slow
def test_pasteade_is_the_same_scenes(coco_root, ade_root):
    assert classes(ade_root / "classes.json") == ["background", *paste.CLASSES]
    for split, ade_split in (("train", "training"), ("val", "validation")):
        coco = load_coco(coco_root / "annotations" / f"instances_{split}.json")
        check_semantic_matches_coco(coco, ade_root / "annotations" / ade_split, sorted(coco.imgs))
        for info in coco.imgs.values():
            image = (ade_root / "images" / ade_split / info["file_name"]).read_bytes()
            assert image == (coco_root / split / info["file_name"]).read_bytes()
    counts = prepare.read_manifest(ade_root)["counts"]["val"]
    assert counts["images"] == 8 and sum(counts["pixels_per_class"].values()) == 8 * 256 * 256


@pytest.mark.slow
def test_mmdet_reads_pastecoco(coco_root):
    from pycocotools import mask as mask_utils

    n, sample = mmdet_sample(coco_root, "val", list(paste.CLASSES))
    coco = load_coco(coco_root / "annotations" / "instances_val.json")
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert n == 8 and sample["img"].shape == (256, 256, 3) and len(sample["gt_bboxes"]) == len(anns)
    expected_boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
    np.testing.assert_allclose(sample["gt_bboxes"].tensor.numpy(), expected_boxes)
    assert sample["gt_bboxes_labels"].tolist() == [a["category_id"] - 1 for a in anns]
    expected_masks = np.stack([mask_utils.decode(coco.annToRLE(a)) for a in anns])
    np.testing.assert_array_equal(sample["gt_masks"].masks, expected_masks)


@pytest.mark.slow
def test_mmseg_reads_pasteade(ade_root):
    names = classes(ade_root / "classes.json")
    n, sample = mmseg_sample(ade_root, "validation", names, reduce_zero_label=False)
    expected = np.asarray(Image.open(ade_root / "annotations" / "validation" / "000000.png"))
    assert n == 8 and sample["img"].shape == (256, 256, 3)
    np.testing.assert_array_equal(sample["gt_seg_map"], expected)
    assert sample["gt_seg_map"].max() <= N_CLASSES and (sample["gt_seg_map"] == 0).any()
    # ADE20K's own convention on the same files: background ignored, classes shifted down by one.
    _, reduced = mmseg_sample(ade_root, "validation", names[1:], reduce_zero_label=True)
    np.testing.assert_array_equal(reduced["gt_seg_map"], np.where(expected == 0, 255, expected - 1))


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(coco_root, tmp_path):
    first = prepare.read_manifest(coco_root)["content_sha256"]
    again = prepare.prepare("pastecoco", root=tmp_path / "again", options=SMALL)
    assert prepare.read_manifest(again)["content_sha256"] == first
    other = prepare.prepare("pastecoco", root=tmp_path / "other", options=SMALL, seed=1)
    assert prepare.read_manifest(other)["content_sha256"] != first
