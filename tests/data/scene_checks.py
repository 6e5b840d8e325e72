"""Checks shared by the COCO / ADE tests of `shapes` and `pastecoco` / `pasteade` (imported by test modules)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def load_coco(path: Path):
    """pycocotools' COCO on `path`, its progress prints swallowed."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def check_coco_annotations(coco, image_dir: Path) -> int:
    """bbox / area / RLE of every annotation agree with its decoded mask; masks of an image are disjoint.

    Returns the number of annotations checked.
    """
    from pycocotools import mask as mask_utils

    n = 0
    for image_id, info in coco.imgs.items():
        height, width = np.asarray(Image.open(image_dir / info["file_name"])).shape[:2]
        assert (info["height"], info["width"]) == (height, width)
        owners = np.zeros((height, width), np.int32)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            mask = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(mask)
            bbox = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["bbox"] == [int(v) for v in bbox], (image_id, ann["id"])
            assert ann["bbox"] == mask_utils.toBbox(ann["segmentation"]).tolist()
            assert ann["area"] == int(mask.sum()) == int(mask_utils.area(ann["segmentation"]))
            assert ann["iscrowd"] == 0 and ann["category_id"] in coco.cats
            owners += mask
            n += 1
        assert owners.max() <= 1, f"overlapping masks in image {image_id}"
    return n


def coco_self_ap(coco) -> tuple[float, float]:
    """(segm AP, bbox AP) of the ground truth scored as detections with score 1.0."""
    from pycocotools.cocoeval import COCOeval

    results = []
    for iou_type in ("segm", "bbox"):
        key = "segmentation" if iou_type == "segm" else "bbox"
        dets = [
            {"image_id": a["image_id"], "category_id": a["category_id"], key: a[key], "score": 1.0}
            for a in coco.dataset["annotations"]
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(coco, coco.loadRes(dets), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        results.append(float(evaluator.stats[0]))
    return results[0], results[1]


def check_semantic_matches_coco(coco, ade_labels: Path, image_ids: list[int]) -> None:
    """The ADE label map of the same scene equals the COCO masks painted with their category ids."""
    for image_id in image_ids:
        info = coco.imgs[image_id]
        expected = np.zeros((info["height"], info["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            expected[coco.annToMask(ann).astype(bool)] = ann["category_id"]
        actual = np.asarray(Image.open(ade_labels / info["file_name"]))
        np.testing.assert_array_equal(actual, expected)


def classes(path: Path) -> list[str]:
    return json.loads(path.read_text(encoding="utf-8"))


def mmdet_sample(root: Path, split: str, names: list[str], index: int = 0) -> tuple[int, dict]:
    """(len, sample `index` through LoadImageFromFile + LoadAnnotations) of mmdet's CocoDataset, scope 'mmdet'."""
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")  # mmdet and mmseg both register "LoadAnnotations": name the scope every time
    from mmdet.datasets import CocoDataset

    dataset = CocoDataset(
        data_root=str(root),
        ann_file=f"annotations/instances_{split}.json",
        data_prefix={"img": f"{split}/"},
        metainfo={"classes": tuple(names)},
        pipeline=[{"type": "LoadImageFromFile"}, {"type": "LoadAnnotations", "with_bbox": True, "with_mask": True}],
    )
    return len(dataset), dataset[index]


def mmseg_sample(root: Path, split: str, names: list[str], reduce_zero_label: bool, index: int = 0) -> tuple[int, dict]:
    """(len, sample `index` through LoadImageFromFile + LoadAnnotations) of mmseg's BaseSegDataset, scope 'mmseg'."""
    from mmengine.registry import init_default_scope

    init_default_scope("mmseg")
    from mmseg.datasets import BaseSegDataset

    dataset = BaseSegDataset(
        data_root=str(root),
        data_prefix={"img_path": f"images/{split}", "seg_map_path": f"annotations/{split}"},
        img_suffix=".png",
        seg_map_suffix=".png",
        reduce_zero_label=reduce_zero_label,
        metainfo={"classes": tuple(names)},
        pipeline=[{"type": "LoadImageFromFile"}, {"type": "LoadAnnotations"}],
    )
    return len(dataset), dataset[index]
