"""Run a pre-training config on mmengine's Runner, and finish the schedule from one source of truth."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction: re-exported for the CLI)
from mmengine.dist import master_only
from mmengine.registry import RUNNERS
from mmengine.runner import Runner, find_latest_checkpoint

from rils_bench import compat, precision
from rils_bench.amp import apply_precision
from rils_bench.errors import UserError
from rils_bench.fileio import atomic_write, sha256_of

RESUME_SEAL = ".rils-bench.sha256"  # beside each mmengine checkpoint this runner wrote: the file's sha256
_RUNNER_CHECKPOINT = re.compile(r"(iter|epoch)_\d+\.pth")


@RUNNERS.register_module()
class PretrainRunner(Runner):
    """mmengine's Runner with checkpoint loading made safe.

    - `load_from` is read weights-only (tensors and primitives; nothing in the file runs). A file that needs more
      is refused in one line.
    - Resuming needs full unpickling (mmengine's resume files pickle numpy and `HistoryBuffer` objects, see
      `compat.unsafe_load_for_mmengine_resume`), so it is allowed only for a file this runner wrote: inside this
      work dir, named by mmengine (`iter_N.pth`), and matching the sha256 seal written beside it when it was
      saved. Anything else is refused before it is opened.
    - `resume=True` with nothing to resume is refused; `resume="auto"` starts from scratch then (for jobs that
      are requeued).
    """

    def load_or_resume(self) -> None:
        if self._has_loaded:
            return
        resume_from = None
        if self._resume:
            resume_from = self._load_from or find_latest_checkpoint(self.work_dir)
            if resume_from is None and self._resume != "auto":
                raise UserError(
                    f"--resume: no checkpoint to resume from in {self.work_dir}; start without --resume, or pass "
                    "--resume auto to resume when there is one and start from scratch otherwise"
                )
        if resume_from is not None:
            check_own_checkpoint(resume_from, self.work_dir)
            self.logger.info(f"resuming from {resume_from}")
            with compat.unsafe_load_for_mmengine_resume():
                self.resume(resume_from)
        elif self._load_from is not None:
            try:
                self.load_checkpoint(self._load_from)  # torch >= 2.6: weights_only=True
            except pickle.UnpicklingError as err:
                raise UserError(
                    f"load_from={self._load_from}: not a weights-only file (it holds Python objects that would run "
                    f"code when loaded), refused: {str(err).splitlines()[0]}"
                ) from None
        self._has_loaded = True

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        super().save_checkpoint(out_dir, filename, *args, **kwargs)
        path = Path(out_dir) / filename
        with atomic_write(path.with_name(path.name + RESUME_SEAL)) as f:
            f.write(sha256_of(path).encode())
        for seal in Path(out_dir).glob(f"*.pth{RESUME_SEAL}"):  # seals of checkpoints mmengine has rotated out
            if not seal.with_name(seal.name.removesuffix(RESUME_SEAL)).exists():
                seal.unlink(missing_ok=True)


def check_own_checkpoint(path: str | Path, work_dir: str | Path) -> None:
    """Refuse to unpickle `path` unless this runner wrote it in `work_dir` (see `PretrainRunner`)."""
    path, work_dir = Path(path).resolve(), Path(work_dir).resolve()
    seal = path.with_name(path.name + RESUME_SEAL)
    if not path.is_file():
        raise UserError(f"cannot resume: checkpoint {path} does not exist")
    if path.parent != work_dir or not _RUNNER_CHECKPOINT.fullmatch(path.name):
        reason = f"only mmengine's iter_N.pth files inside the work dir {work_dir} are resumed"
    elif not seal.is_file():
        reason = f"it has no {RESUME_SEAL} seal, so rils-bench did not write it"
    elif seal.read_text().strip() != sha256_of(path):
        reason = "its content changed since rils-bench wrote it (sha256 differs from its seal)"
    else:
        return
    raise UserError(
        f"refusing to resume from {path}: {reason}. Resuming unpickles the file, which can run code; to start "
        "from other weights, use --cfg-options load_from=FILE (read weights-only)"
    )


def finalize_schedule(cfg: Config) -> None:
    """Derive the LR schedule from `train_cfg.max_iters` and `warmup_ratio`, so overriding the length on the
    command line (`--cfg-options train_cfg.max_iters=N`) keeps warm-up and cosine decay consistent.

    Expects `param_scheduler` = [a warm-up scheduler, a decay scheduler] with iteration-based bounds.
    """
    max_iters = cfg.train_cfg.get("max_iters")
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
        raise UserError(f"train_cfg.max_iters must be a positive integer, got {max_iters!r}")
    # At least 2: mmengine's LinearLR reaches the base LR one step before its end, so 1 would never get there.
    warmup = max(2, round(max_iters * float(cfg.get("warmup_ratio", 0.05))))
    if max_iters <= warmup:
        raise UserError(f"train_cfg.max_iters={max_iters} leaves no iterations after {warmup} warm-up iterations")
    warm, decay = cfg.param_scheduler
    warm.update(by_epoch=False, begin=0, end=warmup)
    decay.update(by_epoch=False, begin=warmup, end=max_iters, T_max=max_iters - warmup)


# The environment variable each launcher sets to the number of processes (mmengine reads the same ones).
_WORLD_SIZE_VARIABLES = {"pytorch": "WORLD_SIZE", "slurm": "SLURM_NTASKS", "mpi": "OMPI_COMM_WORLD_SIZE"}


def launched_world_size(launcher: str) -> int:
    """How many processes this run has: 1 without a launcher, else what the launcher put in the environment."""
    if launcher == "none":
        return 1
    variable = _WORLD_SIZE_VARIABLES.get(launcher)
    value = os.environ.get(variable or "", "")
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"--launcher {launcher}: {variable} is not set to a process count (got {value!r})")
    return int(value)


def finalize_batch(cfg: Config, world_size: int) -> None:
    """Derive the per-rank batch from `global_batch` (when the config states one) and the actual world size.

    Raises:
        UserError: a global batch the ranks cannot share equally, or one that also states a per-rank batch.
    """
    if "global_batch" not in cfg:
        return
    global_batch = int(cfg.global_batch)
    if global_batch % world_size:
        raise UserError(f"global_batch={global_batch} does not split evenly over {world_size} processes")
    if cfg.train_dataloader.get("batch_size") not in (None, global_batch // world_size):
        raise UserError(
            f"the config states both global_batch={global_batch} and train_dataloader.batch_size="
            f"{cfg.train_dataloader.batch_size}, which disagree at {world_size} processes: state one"
        )
    cfg.train_dataloader.batch_size = global_batch // world_size


def load_config(
    config: str | Path,
    *,
    work_dir: str | Path | None = None,
    cfg_options: dict[str, Any] | None = None,
    resume: bool | str = False,
    launcher: str = "none",
) -> Config:
    """The resolved config of a run: file, then command-line overrides, then the derived batch and schedule."""
    config = Path(config)
    if not config.is_file():
        raise UserError(f"config not found: {config}")
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = str(work_dir or cfg.get("work_dir") or Path("work_dirs") / config.stem)
    cfg.resume = resume
    cfg.launcher = launcher
    finalize_batch(cfg, launched_world_size(launcher))
    finalize_schedule(cfg)
    finalize_precision(cfg)
    return cfg


def finalize_precision(cfg: Config, device: str | None = None) -> None:
    """Resolve `cfg.precision` (`auto`, fp32, bf16, fp16; default auto) for the device mmengine will train on and
    set the optimizer wrapper to match (`rils_bench.amp`). The resolved name lands in `cfg.resolved_precision`,
    which the exported checkpoint carries."""
    resolved = precision.resolve(cfg.get("precision", "auto"), device or precision.default_device())
    apply_precision(cfg.optim_wrapper, resolved)
    cfg.resolved_precision = resolved.name
    cfg.precision_reason = resolved.reason


def run_pretrain(
    *,
    config: str | Path,
    work_dir: str | Path | None = None,
    resume: bool | str = False,
    cfg_options: dict[str, Any] | None = None,
    launcher: str = "none",
) -> Path | None:
    """Pre-train as `config` says and return the exported checkpoint (`<work_dir>/export/*.pth`; None on ranks
    other than 0, which export nothing).

    `resume=True` continues from the latest mmengine checkpoint in `work_dir` (same weights, optimizer,
    schedule and data order as an uninterrupted run) and refuses a work dir without one; `resume="auto"` starts
    from scratch then.
    """
    cfg = load_config(config, work_dir=work_dir, cfg_options=cfg_options, resume=resume, launcher=launcher)
    runner = PretrainRunner.from_cfg(cfg)
    runner.train()
    export_path = runner.message_hub.get_info("export_path")
    return Path(export_path) if export_path else None
