"""Hooks: export the tensor-only checkpoint at the end of training, and log throughput."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from rils_bench.checkpoint import save_checkpoint
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
        }
        path = save_checkpoint(Path(runner.work_dir) / "export" / f"{self.name}.pth", _export_state(model), meta)
        runner.logger.info(f"exported checkpoint: {path}")
        runner.message_hub.update_info("export_path", str(path))


def _export_state(model) -> dict:
    """Everything the method trained, under the method's own key names (`encoder.*`, `decoder.*`, ...)."""
    return {k: v for k, v in model.method.state_dict().items()}
