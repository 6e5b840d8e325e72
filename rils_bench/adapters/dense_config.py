"""Preparing an mmdet / mmseg config for one checkpoint and one dataset, and reading the metrics it produces.

The configs under `configs/mmdet/` and `configs/mmseg/` describe a recipe; what depends on the run is filled in
here, each from a single source: the data root (`DATA_ROOT`, substituted by mmengine while the config is parsed),
the classes (the dataset's `classes.json`), and every size that follows from the encoder (width, patch size, depth:
from the checkpoint's model config).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmengine.config import Config, ConfigDict

from rils_bench.adapters.backbone import resolve_out_indices
from rils_bench.errors import UserError


@dataclass(frozen=True)
class DenseTask:
    """A dense transfer task: the OpenMMLab library that runs it and its default config."""

    scope: str  # "mmdet" | "mmseg"
    default_config: str  # relative to the configs directory
    metric_names: tuple[str, ...]  # what `summarise` returns, in table order


_COCO_SUFFIXES = {"mAP": "AP", "mAP_50": "AP50", "mAP_75": "AP75", "mAP_s": "APs", "mAP_m": "APm", "mAP_l": "APl"}
TASKS = {
    "coco": DenseTask(
        scope="mmdet",
        default_config="mmdet/mask-rcnn_rils-vit-tiny_pastecoco.py",
        metric_names=tuple(f"{iou}_{name}" for iou in ("bbox", "segm") for name in _COCO_SUFFIXES.values()),
    ),
    "ade": DenseTask(
        scope="mmseg", default_config="mmseg/upernet_rils-vit-tiny_pasteade.py", metric_names=("mIoU", "mAcc", "aAcc")
    ),
}
UPER_STRIDES = (4, 8, 16, 32)
_LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def configs_dir() -> Path:
    """The repository's `configs/` (beside the package in a clone), else `./configs`."""
    beside_package = Path(__file__).resolve().parents[2] / "configs"
    return beside_package if beside_package.is_dir() else Path("configs")


def resolve_config_path(task: str, config: str | os.PathLike | None) -> Path:
    """The config file to run: `config` as a path, or relative to `configs/`; the task's default when None."""
    if task not in TASKS:
        raise UserError(f"unknown dense task {task!r}; known: {', '.join(TASKS)}")
    if config is None:
        return configs_dir() / TASKS[task].default_config
    for candidate in (Path(config), configs_dir() / config):
        if candidate.is_file():
            return candidate
    raise UserError(f"config not found: {config} (nor under {configs_dir()})")


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    previous = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def load_config(path: Path, data_root: str | os.PathLike | None = None) -> Config:
    """Parse a config with `{{$DATA_ROOT:...}}` set to `data_root` (a trailing slash added), if given."""
    root = None if data_root is None else str(data_root).rstrip("/") + "/"
    with _environment("DATA_ROOT", root):
        return Config.fromfile(str(path))


def fit_to_encoder(cfg: Config, task: str, model_config: dict[str, Any]) -> list[str]:
    """Fill in what the checkpoint's encoder decides; returns one note per value, for the log.

    The backbone gets the full model config (so an overridden size rebuilds exactly); the neck gets the encoder's
    width and patch stride (ViTDet pyramid) or one input per UperNet output at strides 4-32 (MultiLevelNeck). The
    configs leave these out. A config or `--cfg-options` that states one must agree with the checkpoint: nothing
    it says is replaced silently.

    Raises:
        UserError: a stated value that the checkpoint contradicts, or a backbone selecting the wrong number of
            outputs for UperNet.
    """
    backbone, neck, name = cfg.model.backbone, cfg.model.neck, model_config["name"]
    stated = backbone.get("arch")
    if stated is not None and stated != name and not (isinstance(stated, dict) and dict(stated) == model_config):
        shown = stated if isinstance(stated, str) else stated.get("name")
        raise UserError(
            f"the config states model.backbone.arch={shown!r}, but the checkpoint's encoder is {name}: leave arch "
            "out of the config (it comes from the checkpoint)"
        )
    backbone.arch = dict(model_config)
    width, patch = model_config["width"], model_config["patch_size"]
    if task == "coco":
        derived = {"in_channels": width, "backbone_stride": patch}
    else:
        n_outputs = len(resolve_out_indices(backbone.out_indices, model_config["depth"]))
        if n_outputs != len(UPER_STRIDES):
            raise UserError(f"UperNet needs {len(UPER_STRIDES)} backbone outputs, the config selects {n_outputs}")
        derived = {"in_channels": [width] * n_outputs, "scales": [patch / stride for stride in UPER_STRIDES]}
    notes = [f"backbone: {name} (width {width}, patch {patch}) from the checkpoint"]
    for key, value in derived.items():
        given = neck.get(key)
        if given is not None and (list(given) if isinstance(given, (list, tuple)) else given) != value:
            raise UserError(
                f"the config states model.neck.{key}={given}, but the checkpoint's {name} needs {value}: leave it "
                "out of the config (it comes from the checkpoint)"
            )
        neck[key] = value
        notes.append(f"neck.{key} = {value}")
    return notes


def apply_classes(cfg: Config, task: str, classes: list[str]) -> None:
    """Set every dataset's `metainfo.classes` and every head's `num_classes` from one class list."""
    for key in _LOADERS:
        loader = cfg.get(key)
        if not loader:
            continue
        innermost(loader.dataset).metainfo = dict(classes=tuple(classes))
    if task == "coco":
        cfg.model.roi_head.bbox_head.num_classes = len(classes)
        cfg.model.roi_head.mask_head.num_classes = len(classes)
        return
    heads = [cfg.model.decode_head, *_as_list(cfg.model.get("auxiliary_head"))]
    for head in heads:
        head.num_classes = len(classes)


def innermost(dataset: ConfigDict) -> ConfigDict:
    """The dataset a wrapper (RepeatDataset, ClassBalancedDataset ...) wraps, or `dataset` itself."""
    while "dataset" in dataset:
        dataset = dataset.dataset
    return dataset


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def read_classes(data_root: str | os.PathLike) -> list[str] | None:
    """`<data_root>/classes.json` (the built-in sets write one), or None when there is none."""
    path = Path(data_root) / "classes.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def shorten(cfg: Config, max_iters: int) -> None:
    """Train `max_iters` iterations at a constant lr, then evaluate once: a smoke run of any config."""
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=max_iters + 1, save_last=False)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1)
    cfg.log_processor = dict(type="LogProcessor", window_size=1, by_epoch=False)


def summarise(task: str, raw: dict[str, float]) -> dict[str, float | None]:
    """The record's metrics from the evaluator's: COCO AP in percent (None where COCO reports -1: no such object),
    ADE mIoU / mAcc / aAcc in percent. A missing metric is an error: the config's evaluator is not the expected one.

    mmdet's `CocoMetric` reports nothing at all when the model made no detection above its score threshold; that
    is an AP of 0 everywhere.
    """
    if task == "coco" and not raw:
        return dict.fromkeys(TASKS["coco"].metric_names, 0.0)
    if task == "coco":
        wanted = {
            f"coco/{iou}_{src}": f"{iou}_{dst}" for iou in ("bbox", "segm") for src, dst in _COCO_SUFFIXES.items()
        }
    else:
        wanted = {name: name for name in TASKS["ade"].metric_names}
    missing = sorted(set(wanted) - set(raw))
    if missing:
        raise RuntimeError(f"the evaluator did not report {missing}; it reported {sorted(raw)}")
    if task == "coco":
        return {dst: None if raw[src] < 0 else round(100 * float(raw[src]), 1) for src, dst in wanted.items()}
    return {dst: round(float(raw[src]), 2) for src, dst in wanted.items()}


def hyperparameters(cfg: Config) -> dict[str, Any]:
    """The protocol's knobs as the record shows them (read back from the resolved config, never restated)."""
    optimizer = cfg.optim_wrapper.optimizer
    backbone = cfg.model.backbone
    loop = cfg.train_cfg
    return {
        "optimizer": optimizer.type,
        "lr": optimizer.lr,
        "weight_decay": optimizer.get("weight_decay"),
        "layer_decay_rate": cfg.optim_wrapper.get("paramwise_cfg", {}).get("layer_decay_rate"),
        "batch_size_per_device": cfg.train_dataloader.batch_size,
        "schedule": {k: loop[k] for k in ("type", "max_epochs", "max_iters") if k in loop},
        "img_size": backbone.img_size,
        "drop_path_rate": backbone.get("drop_path_rate", 0.0),
        "window_size": backbone.get("window_size", 0),
    }
