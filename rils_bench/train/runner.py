"""Run a pre-training config on mmengine's Runner, and finish the schedule from one source of truth."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction: re-exported for the CLI)
from mmengine.dist import master_only
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from rils_bench import compat, precision
from rils_bench.amp import apply_precision
from rils_bench.errors import UserError
from rils_bench.fileio import atomic_write, check_output_dir, sha256_of
from rils_bench.models.registry import resolve_config
from rils_bench.train.checkpoints import (
    RESUME_SEAL,
    RUNNER_CHECKPOINT,
    check_resume_file,
    history_buffers_without_functions,
    refuse_unsafe_file,
    resume_target,
    resume_types,
)


@RUNNERS.register_module()
class PretrainRunner(Runner):
    """mmengine's Runner with checkpoint loading made safe: nothing it reads can run code
    (`rils_bench.train.checkpoints`).

    - `load_from` and resume files are read weights-only, with exactly the types mmengine's training state holds
      (`resume_types`); a file that needs more is refused in one line, whoever wrote it, whatever its seal says.
    - Its own checkpoints need no more (`history_buffers_without_functions`), and each gets a sha256 seal.
    - Resuming reads only mmengine's `iter_N.pth` files inside this work dir whose seal matches.
    - `resume=True` with nothing to resume is refused; `resume="auto"` starts from scratch then (for jobs that
      are requeued).
    """

    def load_or_resume(self) -> None:
        if self._has_loaded:
            return
        resume_from = resume_target(self.work_dir, load_from=self._load_from, resume=self._resume)
        if resume_from is not None:
            check_resume_file(resume_from, self.work_dir)
            self.logger.info(f"resuming from {resume_from}")
            safe = refuse_unsafe_file(resume_from, "cannot resume from ", structure=False)
            with compat.weights_only_loads(resume_types()), safe:
                self.resume(resume_from)
        elif self._load_from is not None:
            with compat.weights_only_loads(resume_types()), refuse_unsafe_file(self._load_from, "load_from="):
                self.load_checkpoint(self._load_from)
        self._has_loaded = True

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        with history_buffers_without_functions():
            super().save_checkpoint(out_dir, filename, *args, **kwargs)
        path = Path(out_dir) / filename
        with atomic_write(path.with_name(path.name + RESUME_SEAL)) as f:
            f.write(sha256_of(path).encode())
        for seal in Path(out_dir).glob(f"*.pth{RESUME_SEAL}"):  # seals of checkpoints mmengine has rotated out
            if not seal.with_name(seal.name.removesuffix(RESUME_SEAL)).exists():
                seal.unlink(missing_ok=True)


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
    """The resolved config of a run: file, then command-line overrides, then the derived batch and schedule,
    checked (`check_config`) before anything is built."""
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
    check_config(cfg)
    return cfg


def check_config(cfg: Config) -> None:
    """Refuse, in one line, the values mmengine or torch would reject only deep inside the Runner: an unknown
    model size, a batch that is not a positive integer, a `load_from` that is not a file.

    Raises:
        UserError: naming the key and the value.
    """
    arch = cfg.model.get("arch")
    try:
        resolve_config(arch)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        message = err.args[0] if err.args else type(err).__name__
        raise UserError(f"model.arch={arch!r}: {message}") from None
    batch = cfg.train_dataloader.get("batch_size")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UserError(f"train_dataloader.batch_size must be a positive integer, got {batch!r}")
    load_from = cfg.get("load_from")
    if load_from is not None and not Path(load_from).is_file():
        raise UserError(f"load_from={load_from}: no such file")


def check_work_dir(work_dir: str | Path, *, resume: bool | str, force: bool) -> None:
    """Before a run starts: the work dir can be written, and a fresh run (no `--resume`) does not silently replace
    the checkpoints and export of a run already there (`force` says the user wants exactly that).

    Raises:
        UserError: an unwritable work dir, or one holding a run, with what to pass instead.
    """
    work_dir = check_output_dir(work_dir, "--work-dir")
    if resume or force or not work_dir.is_dir():
        return
    held = sorted(p.name for p in work_dir.iterdir() if RUNNER_CHECKPOINT.fullmatch(p.name))
    held += [f"export/{p.name}" for p in sorted((work_dir / "export").glob("*.pth"))]
    if held:
        raise UserError(
            f"--work-dir {work_dir} already holds a run ({', '.join(held[:3])}): pass --resume to continue it, "
            "--force to start again over it, or another --work-dir"
        )


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
    force: bool = False,
) -> Path | None:
    """Pre-train as `config` says and return the exported checkpoint (`<work_dir>/export/*.pth`; None on ranks
    other than 0, which export nothing).

    `resume=True` continues from the latest mmengine checkpoint in `work_dir` (same weights, optimizer,
    schedule and data order as an uninterrupted run) and refuses a work dir without one; `resume="auto"` starts
    from scratch then. Without either, a work dir that holds a run is refused unless `force`.
    """
    cfg = load_config(config, work_dir=work_dir, cfg_options=cfg_options, resume=resume, launcher=launcher)
    check_work_dir(cfg.work_dir, resume=resume, force=force)
    resume_from = resume_target(cfg.work_dir, load_from=cfg.get("load_from"), resume=resume)
    if resume_from is not None:  # refused before the Runner writes anything into the work dir
        check_resume_file(resume_from, cfg.work_dir)
    runner = PretrainRunner.from_cfg(cfg)
    runner.train()
    export_path = runner.message_hub.get_info("export_path")
    return Path(export_path) if export_path else None
