"""A hold-out of the train split, for choosing a dense recipe without ever looking at val.

`hold_out(cfg, task, fraction, out_dir)` rewrites a resolved config so that it trains on the first `1 - fraction`
of the train split (in the dataset's own order) and validates on the rest. The record of such a run says
`split="train-holdout"`; tables leave those records out: they justify a choice, they are not a result.

ade (mmseg `BaseSegDataset`): the train image list is the image folder sorted by path with nothing filtered, so
mmengine's `indices` select the same images in both loaders. coco (mmdet `CocoDataset`): images without objects
are filtered before `indices` apply, so indices would not line up; the train annotation file is split into two
files under `out_dir` instead, and the COCO evaluator reads the hold-out one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mmengine.config import Config, ConfigDict

from rils_bench.adapters.dense_config import innermost
from rils_bench.errors import UserError
from rils_bench.fileio import atomic_write

__all__ = ["hold_out"]


def hold_out(cfg: Config, task: str, fraction: float, out_dir: Path) -> int:
    """Train on the first `1 - fraction` of the train split, validate (and test) on the rest; the hold-out size."""
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--holdout must be a fraction between 0 and 1 (exclusive), got {fraction}")
    train = innermost(cfg.train_dataloader.dataset)
    holdout = copy.deepcopy(train)
    holdout.pipeline = copy.deepcopy(innermost(cfg.val_dataloader.dataset).pipeline)
    holdout.pop("filter_cfg", None)
    holdout.test_mode = True
    if task == "ade":
        n = _count_images(train)
        n_fit = _fit_count(n, fraction)
        train.indices, holdout.indices = n_fit, list(range(n_fit, n))
    elif task == "coco":
        fit_file, holdout_file, n, n_fit = _split_annotations(train, fraction, out_dir)
        train.ann_file, holdout.ann_file = str(fit_file), str(holdout_file)
        for name in ("val_evaluator", "test_evaluator"):
            if cfg.get(name) is not None:
                cfg[name].ann_file = str(holdout_file)
    else:
        raise UserError(f"no hold-out for dense task {task!r}")
    cfg.val_dataloader.dataset = holdout
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    return n - n_fit


def _fit_count(n: int, fraction: float) -> int:
    n_fit = n - round(fraction * n)
    if n_fit < 1 or n_fit >= n:
        raise UserError(f"a hold-out of {fraction} of {n} train images leaves one side empty")
    return n_fit


def _count_images(dataset: ConfigDict) -> int:
    folder = Path(dataset.data_root) / dataset.data_prefix.img_path
    if not folder.is_dir():
        raise UserError(f"train image folder not found: {folder}")
    return sum(1 for path in folder.rglob(f"*{dataset.img_suffix}") if path.is_file())


def _split_annotations(dataset: ConfigDict, fraction: float, out_dir: Path) -> tuple[Path, Path, int, int]:
    source = Path(dataset.ann_file)
    if not source.is_absolute():
        source = Path(dataset.data_root) / source
    if not source.is_file():
        raise UserError(f"train annotation file not found: {source}")
    coco = json.loads(source.read_text(encoding="utf-8"))
    n = len(coco["images"])
    n_fit = _fit_count(n, fraction)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, images in (("fit", coco["images"][:n_fit]), ("holdout", coco["images"][n_fit:])):
        files.append(_write_coco(out_dir / f"instances_train-{name}.json", coco, images))
    return files[0], files[1], n, n_fit


def _write_coco(path: Path, coco: dict[str, Any], images: list[dict[str, Any]]) -> Path:
    ids = {image["id"] for image in images}
    subset = {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    with atomic_write(path) as handle:
        handle.write(json.dumps(subset).encode("utf-8"))
    return path
