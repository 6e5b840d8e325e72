"""Run a pre-training config on mmengine's Runner, and finish the schedule from one source of truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction: re-exported for the CLI)
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from rils_bench import compat
from rils_bench.errors import UserError


@RUNNERS.register_module()
class PretrainRunner(Runner):
    """mmengine's Runner, with full-pickle loading allowed only while it resumes from its own checkpoint.

    mmengine's resume files pickle numpy and `HistoryBuffer` objects, which `torch.load(weights_only=True)`
    refuses; see `compat.unsafe_load_for_mmengine_resume`.
    """

    def load_or_resume(self) -> None:
        with compat.unsafe_load_for_mmengine_resume():
            super().load_or_resume()


def finalize_schedule(cfg: Config) -> None:
    """Derive the LR schedule from `train_cfg.max_iters` and `warmup_ratio`, so overriding the length on the
    command line (`--cfg-options train_cfg.max_iters=N`) keeps warm-up and cosine decay consistent.

    Expects `param_scheduler` = [a warm-up scheduler, a decay scheduler] with iteration-based bounds.
    """
    max_iters = int(cfg.train_cfg.max_iters)
    # At least 2: mmengine's LinearLR reaches the base LR one step before its end, so 1 would never get there.
    warmup = max(2, round(max_iters * float(cfg.get("warmup_ratio", 0.05))))
    if max_iters <= warmup:
        raise UserError(f"train_cfg.max_iters={max_iters} leaves no iterations after {warmup} warm-up iterations")
    warm, decay = cfg.param_scheduler
    warm.update(by_epoch=False, begin=0, end=warmup)
    decay.update(by_epoch=False, begin=warmup, end=max_iters, T_max=max_iters - warmup)


def load_config(
    config: str | Path,
    *,
    work_dir: str | Path | None = None,
    cfg_options: dict[str, Any] | None = None,
    resume: bool = False,
    launcher: str = "none",
) -> Config:
    """The resolved config of a run: file, then command-line overrides, then the derived schedule."""
    config = Path(config)
    if not config.is_file():
        raise UserError(f"config not found: {config}")
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = str(work_dir or cfg.get("work_dir") or Path("work_dirs") / config.stem)
    cfg.resume = resume
    cfg.launcher = launcher
    finalize_schedule(cfg)
    return cfg


def run_pretrain(
    *,
    config: str | Path,
    work_dir: str | Path | None = None,
    resume: bool = False,
    cfg_options: dict[str, Any] | None = None,
    launcher: str = "none",
) -> Path | None:
    """Pre-train as `config` says and return the exported checkpoint (`<work_dir>/export/*.pth`; None on ranks
    other than 0, which export nothing).

    `resume=True` continues from the latest mmengine checkpoint in `work_dir` (same weights, optimizer,
    schedule and data order as an uninterrupted run).
    """
    cfg = load_config(config, work_dir=work_dir, cfg_options=cfg_options, resume=resume, launcher=launcher)
    runner = PretrainRunner.from_cfg(cfg)
    runner.train()
    export_path = runner.message_hub.get_info("export_path")
    return Path(export_path) if export_path else None
