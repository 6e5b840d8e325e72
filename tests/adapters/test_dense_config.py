"""Fitting configs to a checkpoint and a dataset, reading metrics, and parsing `--cfg-options`."""

from __future__ import annotations

import os

import pytest

from rils_bench.adapters import dense_config
from rils_bench.adapters.commands import parse_cfg_options
from rils_bench.errors import UserError
from rils_bench.models.registry import get_model_config


def _tiny(task: str, root: str = "/data/set"):
    return dense_config.load_config(dense_config.resolve_config_path(task, None), root)


def test_data_root_is_substituted_and_the_environment_restored(monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    cfg = _tiny("coco", "/data/set")
    assert cfg.train_dataloader.dataset.dataset.data_root == "/data/set/"
    assert cfg.val_evaluator.ann_file == "/data/set/annotations/instances_val.json"
    assert "DATA_ROOT" not in os.environ
    assert _tiny("coco", None).val_dataloader.dataset.data_root == "data/pastecoco/"  # the config's default


@pytest.mark.parametrize(
    ("arch", "scales"), [("rils_vit_base_patch16", [4, 2, 1, 0.5]), ("rils_vit_tiny_patch8", [2, 1, 0.5, 0.25])]
)
def test_fit_to_encoder(arch, scales):
    model_config = get_model_config(arch)
    ade = _tiny("ade")
    dense_config.fit_to_encoder(ade, "ade", model_config)
    assert ade.model.neck.scales == scales and ade.model.neck.in_channels == [model_config["width"]] * 4
    assert ade.model.backbone.arch == model_config
    coco = _tiny("coco")
    notes = dense_config.fit_to_encoder(coco, "coco", model_config)
    assert (coco.model.neck.in_channels, coco.model.neck.backbone_stride) == (model_config["width"], scales[0] * 4)
    assert notes[0].startswith(f"backbone: {arch}") and f"neck.backbone_stride = {scales[0] * 4}" in notes


@pytest.mark.parametrize(
    ("task", "key", "value"),
    [
        ("coco", "backbone.arch", "rils_vit_base_patch16"),
        ("coco", "neck.in_channels", 768),
        ("coco", "neck.backbone_stride", 16),
        ("ade", "neck.scales", [4, 2, 1, 0.5]),
        ("ade", "neck.in_channels", [768] * 4),
    ],
)
def test_a_stated_value_the_checkpoint_contradicts_is_refused(task, key, value):
    """Configs leave the encoder-derived values out; one stated anyway (e.g. by --cfg-options) must agree."""
    cfg = _tiny(task)
    cfg.merge_from_dict({f"model.{key}": value})
    with pytest.raises(UserError, match=rf"states model\.{key}=.*rils_vit_tiny_patch8"):
        dense_config.fit_to_encoder(cfg, task, get_model_config("rils_vit_tiny_patch8"))
    agreeing = _tiny(task)  # the same value stated for the encoder it belongs to is accepted
    agreeing.merge_from_dict({f"model.{key}": value})
    dense_config.fit_to_encoder(agreeing, task, get_model_config("rils_vit_base_patch16"))


def test_apply_classes_reaches_wrapped_datasets_and_heads():
    coco = _tiny("coco")
    dense_config.apply_classes(coco, "coco", ["a", "b"])
    assert coco.train_dataloader.dataset.type == "RepeatDataset"
    assert coco.train_dataloader.dataset.dataset.metainfo == dict(classes=("a", "b"))
    assert coco.val_dataloader.dataset.metainfo == dict(classes=("a", "b"))
    assert coco.model.roi_head.bbox_head.num_classes == coco.model.roi_head.mask_head.num_classes == 2
    ade = _tiny("ade")
    dense_config.apply_classes(ade, "ade", ["bg", "a", "b"])
    assert ade.model.decode_head.num_classes == ade.model.auxiliary_head.num_classes == 3


def test_summarise():
    raw = {f"coco/{iou}_{k}": 0.5 for iou in ("bbox", "segm") for k in ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m")}
    raw |= {"coco/bbox_mAP_l": -1.0, "coco/segm_mAP_l": 0.123}
    metrics = dense_config.summarise("coco", raw)
    assert metrics["bbox_AP"] == 50.0 and metrics["bbox_APl"] is None and metrics["segm_APl"] == 12.3
    assert list(metrics) == list(dense_config.TASKS["coco"].metric_names)
    assert dense_config.summarise("coco", {}) == dict.fromkeys(dense_config.TASKS["coco"].metric_names, 0.0)
    assert dense_config.summarise("ade", {"mIoU": 41.234, "mAcc": 50.0, "aAcc": 80.0}) == {
        "mIoU": 41.23,
        "mAcc": 50.0,
        "aAcc": 80.0,
    }
    with pytest.raises(RuntimeError, match="did not report"):
        dense_config.summarise("ade", {"mIoU": 1.0})


def test_config_paths_and_options():
    assert dense_config.resolve_config_path("ade", None).name == "upernet_rils-vit-tiny_pasteade.py"
    path = dense_config.resolve_config_path("coco", "mmdet/mask-rcnn_rils-vit-base_coco-100e.py")
    assert path.is_file()
    with pytest.raises(UserError, match="config not found"):
        dense_config.resolve_config_path("coco", "nope.py")
    with pytest.raises(UserError, match="unknown dense task"):
        dense_config.resolve_config_path("voc", None)
    assert parse_cfg_options(["a.b=1", "c=x,y", "d=0.5"]) == {"a.b": 1, "c": ["x", "y"], "d": 0.5}
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_cfg_options(["novalue"])
