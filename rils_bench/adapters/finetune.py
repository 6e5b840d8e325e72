"""`run_dense`: fine-tune Mask R-CNN (mmdet) or UperNet (mmseg) from an encoder checkpoint, evaluate, record.

One path for every checkpoint: the encoder is rebuilt (`load_pretrained`, which also makes `random:<arch>`
baselines), its image tower is written as a converted backbone file into the work dir, and the config's backbone
loads that file through `init_cfg` (strictly: see `rils_bench.adapters.loading`). mmengine's Runner trains and
validates; the metrics of the last validation (after the last epoch / iteration) are the result. Distributed runs
use mmengine's launchers, e.g. `torchrun --nproc_per_node=8 -m rils_bench.cli dense ... --launcher pytorch`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from rils_bench.adapters import dense_config
from rils_bench.adapters.convert import backbone_source, write_backbone
from rils_bench.adapters.holdout import hold_out
from rils_bench.amp import apply_precision
from rils_bench.data.builtin import prepare as builtin
from rils_bench.errors import UserError
from rils_bench.fileio import check_output_dir
from rils_bench.models.pretrained import PretrainedInfo
from rils_bench.precision import Precision, default_device, resolve
from rils_bench.report.record import HOLDOUT_SPLIT, make_record, records_dir, write_record

BUILTIN_SETS = ("pastecoco", "pasteade")  # `dataset_name`s that rils-bench prepares itself when no root is given


class FinalMetrics(Hook):
    """Keeps the metrics of the latest validation and how long validations took (all ranks get the metrics)."""

    priority = "VERY_LOW"

    def __init__(self) -> None:
        self.metrics: dict[str, float] | None = None
        self.val_seconds = 0.0
        self.last_val_seconds = 0.0

    def before_val_epoch(self, runner) -> None:
        self._start = time.perf_counter()

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        self.last_val_seconds = time.perf_counter() - self._start
        self.val_seconds += self.last_val_seconds
        self.metrics = dict(metrics or {})


def run_dense(
    *,
    task: str,
    ckpt: str | os.PathLike,
    config: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    cfg_options: dict[str, Any] | None = None,
    launcher: str = "none",
    max_iters: int | None = None,
    seed: int = 0,
    records_root: Path | None = None,
    precision: str = "auto",
    holdout: float | None = None,
) -> dict[str, float | None]:
    """Fine-tune and evaluate `ckpt` on a dense task; write its result record; return the record's metrics.

    Args:
        task: `"coco"` (instance segmentation, mmdet) or `"ade"` (semantic segmentation, mmseg).
        ckpt: an exported checkpoint path or `random:<arch>`.
        config: config path (or path under `configs/`); default the task's tiny config on its built-in set.
        work_dir: mmengine work dir; default `work_dirs/dense/<config>/<checkpoint tag>`.
        data_root: dataset directory; default `$DATA_ROOT`, else the prepared built-in set the config names
            (prepared now if missing), else the config's default.
        cfg_options: dotted-key overrides applied last (as `--cfg-options`).
        launcher: mmengine launcher: `none`, `pytorch` (torchrun), `slurm`, `mpi`.
        max_iters: smoke run: train this many iterations at a constant lr, then evaluate once.
        seed: seed of the fine-tuning run (and of a `random:` encoder).
        records_root: where the record goes; default `rils_bench.report.record.records_dir()`.
        precision: `auto | fp32 | bf16 | fp16` (`rils_bench.precision`): fine-tuning and validation run under
            autocast in it, weights stay fp32; recorded with the result.
        holdout: train on the first `1 - holdout` of the train split and evaluate on the rest
            (`rils_bench.adapters.holdout`), for choosing a recipe without val; the record's split is then
            `train-holdout`.

    Raises:
        UserError: unknown task, missing config, unreadable checkpoint or one without an image encoder.
    """
    path = dense_config.resolve_config_path(task, config)
    if work_dir is not None:
        check_output_dir(work_dir, "--work-dir")
    check_output_dir(records_root or records_dir(), "records folder")
    visual, encoder_config, info = backbone_source(str(ckpt), seed=seed)
    root, dataset_sha = _data_root(path, data_root)
    cfg = dense_config.load_config(path, root)
    for note in dense_config.fit_to_encoder(cfg, task, encoder_config):
        print_log(note, logger="current")
    classes = dense_config.read_classes(root) if root else None
    if classes:
        dense_config.apply_classes(cfg, task, classes)
    work_dir = Path(work_dir or Path("work_dirs") / "dense" / path.stem / _tag(info))
    # Every rank writes the same bytes atomically, so no rank can read a half-written file.
    backbone_file = write_backbone(
        visual, to=dense_config.TASKS[task].scope, out=work_dir / "backbone.pth",
        meta={"source": info.spec, "source_sha256": info.sha256, "arch": info.arch, "model_config": encoder_config},
    )  # fmt: skip
    del visual
    device = default_device()
    resolved = resolve(precision, device)
    _configure_run(
        cfg, backbone_file=backbone_file, work_dir=work_dir, launcher=launcher, seed=seed, precision=resolved
    )
    if max_iters:
        dense_config.shorten(cfg, max_iters)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if holdout is not None:
        n = hold_out(cfg, task, holdout, work_dir / "holdout")
        print_log(f"hold-out: validating on the last {n} train images, training on the rest", logger="current")
    metrics, seconds = _train_and_evaluate(cfg, task)
    setting = describe_setting(path.stem, max_iters, cfg_options, holdout)
    if is_main_process():
        record = make_record(
            checkpoint=info, task=task, dataset=cfg.get("dataset_name", path.stem),
            split="val" if holdout is None else HOLDOUT_SPLIT, metrics=metrics,
            precision=resolved.name,
            setting=setting, dataset_sha256=dataset_sha, seeds=[seed],
            hyperparameters=dense_config.hyperparameters(cfg),
            config={"file": str(path), "cfg_options": cfg_options or {}, "resolved": cfg.pretty_text,
                    "run": {**seconds, "world_size": get_world_size(), "work_dir": str(work_dir),
                            "device": device}},
        )  # fmt: skip
        record_path = write_record(record, records_root)
        print(summary_line(task, record["dataset"], setting, info.spec, metrics, seconds, record_path), flush=True)
    return metrics


def describe_setting(
    config_name: str, max_iters: int | None, cfg_options: dict[str, Any] | None, holdout: float | None = None
) -> str:
    """The record's setting: the config's name plus every override (and the hold-out fraction).

    A variant then never replaces the record of the config as written (records are keyed by setting);
    `dataset_name` is left out, it is the record's dataset already.
    """
    setting = config_name if not max_iters else f"{config_name} (max_iters={max_iters})"
    overrides = {k: v for k, v in (cfg_options or {}).items() if k != "dataset_name"}
    if overrides:
        setting += " [" + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) + "]"
    return setting if holdout is None else f"{setting} (train hold-out {holdout})"


def _data_root(path: Path, data_root: str | os.PathLike | None) -> tuple[str | None, str | None]:
    """(data root, content sha256 of the prepared set or None); prepares a built-in set when no root is given."""
    root = data_root or os.environ.get("DATA_ROOT")
    if root is None:
        name = dense_config.load_config(path).get("dataset_name")
        if name in BUILTIN_SETS:
            root = builtin.prepare(name)  # returns at once when the prepared copy is up to date
    if root is None:
        return None, None
    if not Path(root).is_dir():
        raise UserError(f"data root not found: {root}")
    manifest = builtin.read_manifest(Path(root))
    return str(root), (manifest or {}).get("content_sha256")


def _tag(info: PretrainedInfo) -> str:
    return info.sha256[:12] if info.sha256 else f"random-{info.arch}-seed{info.seed}"


def _configure_run(cfg, *, backbone_file: Path, work_dir: Path, launcher: str, seed: int, precision: Precision) -> None:
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(backbone_file))
    cfg.work_dir = str(work_dir)
    cfg.launcher = launcher
    cfg.randomness = dict(seed=seed)
    if precision.autocast and precision.device_type == "cpu":
        # mmcv's CPU kernels (nms, roi_align) take fp32 only: autocast the ViT backbone, where the FLOPs are.
        cfg.model.backbone.precision = precision.name
        precision = Precision("fp32", "cpu", "the backbone alone runs in bf16 on a CPU")
    apply_precision(cfg.optim_wrapper, precision)
    if cfg.get("val_cfg") is None or cfg.get("val_dataloader") is None:
        raise UserError("the config has no validation loop (val_cfg / val_dataloader): nothing would be evaluated")


def _train_and_evaluate(cfg, task: str) -> tuple[dict[str, float | None], dict[str, float]]:
    """Train with mmengine's Runner (which validates after the last epoch / iteration); (metrics, seconds)."""
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    final = FinalMetrics()
    runner.register_hook(final)
    start = time.perf_counter()
    runner.train()
    total = time.perf_counter() - start
    if final.metrics is None:
        raise RuntimeError("training ended without a validation: the config's val_interval skips the last one")
    seconds = {
        "train_seconds": round(total - final.val_seconds, 1),
        "eval_seconds": round(final.last_val_seconds, 1),
    }
    return dense_config.summarise(task, final.metrics), seconds


def summary_line(
    task: str, dataset: str, setting: str, spec: str, metrics: dict[str, float | None], seconds: dict[str, float],
    record_path: Path,
) -> str:  # fmt: skip
    """One line with every metric, the timings and where the record went."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    if task == "coco":
        names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
        parts = [f"{iou} " + " ".join(f"{n} {fmt(metrics[f'{iou}_{n}'])}" for n in names) for iou in ("bbox", "segm")]
    else:
        parts = [" ".join(f"{name} {fmt(metrics[name])}" for name in ("mIoU", "mAcc", "aAcc"))]
    return (
        f"{task} {dataset} [{setting}] {spec}: {' | '.join(parts)} | train {seconds['train_seconds']:.0f} s, "
        f"eval {seconds['eval_seconds']:.0f} s -> {record_path}"
    )
