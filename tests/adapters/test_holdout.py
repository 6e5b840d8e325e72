"""The train hold-out: the two sides partition the train split, and val is never read."""

from __future__ import annotations

import json

import pytest

from rils_bench.adapters import dense_config
from rils_bench.adapters.dense_config import innermost
from rils_bench.adapters.holdout import hold_out
from rils_bench.errors import UserError


def _config(task, root):
    return dense_config.load_config(dense_config.resolve_config_path(task, None), str(root))


def test_ade_trains_on_the_first_images_and_validates_on_the_rest(tmp_path):
    folder = tmp_path / "images" / "training"
    folder.mkdir(parents=True)
    for i in range(8):
        (folder / f"{i:03d}.png").write_bytes(b"")
    cfg = _config("ade", tmp_path)
    val_pipeline = cfg.val_dataloader.dataset.pipeline
    assert hold_out(cfg, "ade", 0.25, tmp_path / "out") == 2
    train, holdout = innermost(cfg.train_dataloader.dataset), cfg.val_dataloader.dataset
    assert train.indices == 6 and holdout.indices == [6, 7]
    assert holdout.data_prefix.img_path == "images/training" and holdout.test_mode
    assert holdout.pipeline == val_pipeline  # evaluated as val is: no augmentation
    assert cfg.test_dataloader.dataset == holdout


def test_coco_splits_the_train_annotations_and_the_evaluator_reads_the_holdout(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8} for i in range(1, 5)]
    annotations = [{"id": 10 + i, "image_id": i, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16} for i in (1, 3, 4)]
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train.json").write_text(json.dumps(coco))
    cfg = _config("coco", tmp_path)
    assert hold_out(cfg, "coco", 0.5, tmp_path / "out") == 2
    fit = json.loads((tmp_path / "out" / "instances_train-fit.json").read_text())
    held = json.loads((tmp_path / "out" / "instances_train-holdout.json").read_text())
    assert [i["id"] for i in fit["images"]] == [1, 2] and [a["image_id"] for a in fit["annotations"]] == [1]
    assert [i["id"] for i in held["images"]] == [3, 4] and [a["image_id"] for a in held["annotations"]] == [3, 4]
    assert held["categories"] == coco["categories"]
    assert innermost(cfg.train_dataloader.dataset).ann_file.endswith("instances_train-fit.json")
    holdout = cfg.val_dataloader.dataset
    assert holdout.ann_file.endswith("instances_train-holdout.json") and holdout.data_prefix.img == "train/"
    assert "filter_cfg" not in holdout  # every held-out image is scored, as val's are
    assert cfg.val_evaluator.ann_file == cfg.test_evaluator.ann_file == holdout.ann_file


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.01])
def test_a_fraction_that_leaves_a_side_empty_is_refused(tmp_path, fraction):
    folder = tmp_path / "images" / "training"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"{i}.png").write_bytes(b"")
    with pytest.raises(UserError, match="--holdout|empty"):
        hold_out(_config("ade", tmp_path), "ade", fraction, tmp_path / "out")
