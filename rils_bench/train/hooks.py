"""Hooks: log throughput, count skipped bad samples, export the tensor-only checkpoint at the end of training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from rils_bench.checkpoint import save_checkpoint
from rils_bench.errors import UserError
from rils_bench.provenance import git_sha


@HOOKS.register_module()
class ThroughputHook(Hook):
    """Log images per second (all ranks) next to mmengine's time / ETA columns."""

    priority = "LOW"

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        batch = len(data_batch["inputs"]) * get_world_size()
        runner.message_hub.update_scalar("train/img_per_s", batch / max(time.perf_counter() - self._start, 1e-9))


@HOOKS.register_module()
class BadSampleHook(Hook):
    """Count the bad samples the data readers skipped (`rils_bench.data.bad_samples`), log the running total as
    `skipped`, keep it for the exported checkpoint (`meta["skipped_samples"]`), and stop the run with one line when
    more than `limit` of the samples read were bad: a few broken files are normal for web data; 10 % means the
    data (or its path) is wrong.

    The fraction is checked once `1 / limit` samples have been read (before that one bad file would decide it),
    and at the end. Totals live in the message hub, so a resumed run continues them.
    """

    priority = "NORMAL"

    def __init__(self, limit: float = 0.01) -> None:
        if not 0 <= limit < 1:
            raise UserError(f"BadSampleHook limit must be a fraction in [0, 1), got {limit!r}")
        self.limit = limit

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        hub = runner.message_hub
        skipped = hub.get_info("skipped_samples", 0) + int(torch.as_tensor(data_batch.get("skipped", 0)).sum())
        read = hub.get_info("read_samples", 0) + len(data_batch["inputs"])
        hub.update_info("skipped_samples", skipped)
        hub.update_info("read_samples", read)
        hub.update_scalar("train/skipped", skipped)
        if self.limit and read + skipped >= 1 / self.limit:
            self._check(skipped, read)

    def after_train(self, runner) -> None:
        hub = runner.message_hub
        self._check(hub.get_info("skipped_samples", 0), hub.get_info("read_samples", 0))

    def _check(self, skipped: int, read: int) -> None:
        seen = skipped + read
        if seen and skipped / seen > self.limit:
            raise UserError(
                f"{skipped} of {seen} training samples ({100 * skipped / seen:.1f} %) were bad and skipped, more than "
                f"the limit of {100 * self.limit:g} %: check the data (the first ones are named above), or raise "
                "custom_hooks' BadSampleHook limit"
            )


@HOOKS.register_module()
class ExportCheckpointHook(Hook):
    """After training, write `<work_dir>/export/<name>.pth`: weights + everything needed to trace and rebuild.

    The file holds only tensors and primitives (`rils_bench.checkpoint`), so it loads with
    `torch.load(weights_only=True)`; mmengine's own checkpoints (for `--resume`) are separate.
    """

    priority = "VERY_LOW"

    def __init__(self, name: str = "pretrained") -> None:
        self.name = name

    def after_run(self, runner) -> None:
        if not is_main_process():
            return
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        meta = {
            "method": model.method_name,
            "model_config": dict(model.encoder.config),
            "steps": runner.iter,
            "seed": runner.seed,
            # The content hash of the built-in set's manifest; None for a user's own table or shards.
            "data_sha256": getattr(runner.train_dataloader.dataset, "content_sha256", None),
            "git_sha": git_sha(),
            "config": runner.cfg.pretty_text,
            "world_size": get_world_size(),
            "precision": runner.cfg.get("resolved_precision", "fp32"),
            "skipped_samples": int(runner.message_hub.get_info("skipped_samples", 0)),
        }
        path = save_checkpoint(Path(runner.work_dir) / "export" / f"{self.name}.pth", _export_state(model), meta)
        runner.logger.info(f"exported checkpoint: {path}")
        runner.message_hub.update_info("export_path", str(path))


def _export_state(model) -> dict:
    """Everything the method trained, under the method's own key names (`encoder.*`, `decoder.*`, ...)."""
    return {k: v for k, v in model.method.state_dict().items()}
