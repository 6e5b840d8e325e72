"""`run_dense` end to end on `shapes`, and the metric path fed with ground truth (AP 100, mIoU 100)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from dense_testing import ARCH
from mmengine.config import Config

from rils_bench.adapters import dense_config
from rils_bench.adapters.finetune import _configure_run, run_dense
from rils_bench.fileio import sha256_of
from rils_bench.precision import Precision, resolve
from rils_bench.report.record import read_records


def _evaluator_for(task: str, data_root):
    """The dataset and evaluator of the task's default config, as the Runner builds them for validation."""
    import importlib

    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope

    scope = dense_config.TASKS[task].scope
    importlib.import_module(f"rils_bench.adapters.{scope}")
    init_default_scope(scope)  # mmdet and mmseg both register LoadAnnotations: name the scope
    cfg = dense_config.load_config(dense_config.resolve_config_path(task, None), data_root)
    dense_config.apply_classes(cfg, task, dense_config.read_classes(data_root))
    dataset = importlib.import_module(f"{scope}.registry").DATASETS.build(cfg.val_dataloader.dataset)
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    return dataset, evaluator


def _decode(mask, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (compressed RLE as written by the built-in sets, or polygons) as an `[H, W]` array."""
    from pycocotools import mask as mask_utils

    if isinstance(mask, dict) and isinstance(mask["counts"], str):
        return mask_utils.decode({"size": mask["size"], "counts": mask["counts"].encode()})
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(mask, height, width)))


def _coco_ground_truth(info: dict, label_shift: int, n_classes: int) -> dict:
    instances = [x for x in info["instances"] if not x["ignore_flag"]]
    height, width = info["height"], info["width"]
    masks = [_decode(x["mask"], height, width) for x in instances]
    return dict(
        img_id=info["img_id"],
        ori_shape=(height, width),
        pred_instances=dict(
            bboxes=torch.tensor([x["bbox"] for x in instances], dtype=torch.float32),
            labels=torch.tensor([(x["bbox_label"] + label_shift) % n_classes for x in instances]),
            scores=torch.ones(len(instances)),
            masks=torch.from_numpy(np.stack(masks)).bool(),
        ),
    )


@pytest.mark.slow
@pytest.mark.parametrize("label_shift", [0, 1])
def test_coco_ground_truth_as_predictions_scores_ap_100(shapes_root, label_shift):
    dataset, evaluator = _evaluator_for("coco", shapes_root / "coco")
    n_classes = len(dataset.metainfo["classes"])
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        evaluator.process([_coco_ground_truth(info, label_shift, n_classes)])
    metrics = dense_config.summarise("coco", evaluator.evaluate(len(dataset)))
    assert set(metrics) == set(dense_config.TASKS["coco"].metric_names)
    if label_shift == 0:
        assert metrics["segm_AP"] == metrics["bbox_AP"] == metrics["segm_AP50"] == 100.0
    else:  # every box and mask in place but with the wrong class: nothing is a true positive
        assert metrics["segm_AP"] == metrics["bbox_AP"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("label_shift", [0, 1])
def test_ade_ground_truth_as_predictions_scores_miou_100(shapes_root, label_shift):
    dataset, evaluator = _evaluator_for("ade", shapes_root / "ade")
    n_classes = len(dataset.metainfo["classes"])
    assert n_classes == 9  # background + 8 shapes, background scored
    for index in range(len(dataset)):
        truth = dataset[index]["data_samples"].gt_sem_seg.data  # [1, H, W] at the original size
        prediction = (truth + label_shift) % n_classes
        evaluator.process([dict(pred_sem_seg=dict(data=prediction), gt_sem_seg=dict(data=truth))])
    metrics = dense_config.summarise("ade", evaluator.evaluate(len(dataset)))
    if label_shift == 0:
        assert metrics == {"mIoU": 100.0, "mAcc": 100.0, "aAcc": 100.0}
    else:
        assert metrics["aAcc"] == 0.0 and metrics["mIoU"] == 0.0


def _train_losses(work_dir) -> list[dict]:
    (scalars,) = work_dir.glob("*/vis_data/scalars.json")
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [row for row in rows if "loss" in row]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "holdout"), [("coco", 0.5), ("ade", None)])  # coco: the riskier hold-out path
def test_two_iterations_train_and_evaluate(task, holdout, exported, shapes_root, tmp_path):
    path, _ = exported
    ckpt = str(path) if task == "coco" else f"random:{ARCH}"  # an exported checkpoint and the random baseline
    records = tmp_path / "records"
    # Cheaper evaluation, same code path: 4 sliding windows per image instead of 9, at most 20 detections.
    faster = {"ade": {"model.test_cfg.stride": (128, 128)}, "coco": {"model.test_cfg.rcnn.max_per_img": 20}}[task]
    metrics = run_dense(
        task=task,
        ckpt=ckpt,
        work_dir=tmp_path / "work",
        data_root=shapes_root / task,
        cfg_options={"dataset_name": f"shapes-{task}", **faster},
        max_iters=2,
        records_root=records,
        holdout=holdout,
    )
    assert list(metrics) == list(dense_config.TASKS[task].metric_names)
    assert all(v is None or math.isfinite(v) for v in metrics.values())
    losses = _train_losses(tmp_path / "work")
    assert [row["iter"] for row in losses] == [1, 2]
    loss_keys = [k for k in losses[0] if k.startswith(("loss", "decode.loss", "aux.loss"))]
    assert len(loss_keys) >= 3 and all(math.isfinite(row[k]) for row in losses for k in loss_keys)

    (record,) = read_records(records, task=task)
    assert record["dataset"] == f"shapes-{task}" and record["metrics"] == metrics
    overrides = ", ".join(f"{k}={v}" for k, v in faster.items())
    setting = f"{dense_config.resolve_config_path(task, None).stem} (max_iters=2) [{overrides}]"
    if holdout is None:
        assert record["split"] == "val" and record["setting"] == setting
    else:  # scored on the held-out train images: COCO ground truth of those images only, nothing from val
        assert record["split"] == "train-holdout" and record["setting"] == f"{setting} (train hold-out 0.5)"
        held = json.loads((tmp_path / "work" / "holdout" / "instances_train-holdout.json").read_text())
        assert "instances_train-holdout.json" in record["config"]["resolved"]
        assert "instances_val" not in record["config"]["resolved"] and held["images"]
    assert record["checkpoint"]["sha256"] == (sha256_of(path) if task == "coco" else None)
    assert record["checkpoint"]["arch"] == ARCH and record["hyperparameters"]["schedule"]["max_iters"] == 2
    assert torch.load(tmp_path / "work" / "backbone.pth", weights_only=True)["meta"]["arch"] == ARCH
    auto = resolve("auto", "cpu")
    assert record["precision"] == auto.name
    assert (f"precision='{auto.name}'" in record["config"]["resolved"]) == auto.autocast  # on the backbone


@pytest.mark.parametrize(
    ("precision", "wrapper", "backbone"),
    [
        (Precision("bf16", "cpu", ""), {"type": "OptimWrapper"}, "bf16"),  # mmcv's CPU kernels take fp32 only
        (Precision("fp32", "cpu", ""), {"type": "OptimWrapper"}, None),
        (Precision("fp16", "cuda", ""), {"type": "AmpOptimWrapper", "dtype": "float16"}, None),  # whole model
    ],
)
def test_dense_precision_autocasts_the_backbone_on_cpu_and_the_model_on_gpu(precision, wrapper, backbone, tmp_path):
    cfg = Config(dict(model=dict(backbone=dict(type="RILSViT")), optim_wrapper=dict(type="OptimWrapper"), val_cfg={}))
    cfg.val_dataloader = {}
    _configure_run(
        cfg, backbone_file=tmp_path / "b.pth", work_dir=tmp_path, launcher="none", seed=0, precision=precision
    )
    assert {k: v for k, v in cfg.optim_wrapper.items()} == wrapper
    assert cfg.model.backbone.get("precision") == backbone


@pytest.mark.parametrize("flag", ["--work-dir", "records"])
def test_an_output_folder_that_cannot_be_one_is_refused_before_the_backbone_is_read(
    flag, tmp_path, monkeypatch, capsys
):
    from rils_bench.cli import main

    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    argv = ["dense", "--task", "ade", "--ckpt", str(tmp_path / "missing.pth"), "--max-iters", "1"]
    if flag == "records":
        monkeypatch.setenv("RILS_BENCH_RECORDS", str(a_file / "records"))
    else:
        argv += ["--work-dir", str(a_file / "run")]
    assert main(argv) == 2  # the output is refused before the missing checkpoint is even looked at
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rils-bench: error: {flag}") and "is a file" in err and "\n" not in err, err
    assert a_file.read_text() == "keep me"
