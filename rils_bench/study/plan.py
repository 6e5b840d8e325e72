"""A study config (`configs/study/*.py`) read into what the stages do: one `Run` per (method, pre-training seed).

The budget is written once (images seen, batch, encoder, input size, seeds, precision); every run's pre-training
settings are derived from it and passed as `--cfg-options`, so all methods see the same images in the same order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rils_bench.errors import UserError

STAGES = ("pretrain", "eval", "dense", "tables")
DEFAULT_STAGES = ("pretrain", "eval", "tables")


@dataclass(frozen=True)
class Run:
    """One pre-training run of the study."""

    method: str
    seed: int
    config: Path  # the method's pre-training config
    cfg_options: dict[str, Any]  # the study's budget, applied over the config
    work_dir: Path

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.seed}"


@dataclass(frozen=True)
class Study:
    """A resolved study config."""

    name: str
    runs: list[Run]
    floors: list[str]
    evaluation: dict[str, Any]
    dense: dict[str, Any]
    work_dir: Path
    results: Path
    budget: dict[str, Any]  # what the tables print as the study's budget
    # Upper anchors (e.g. `reference:dinov2-s14`): publicly pre-trained encoders that get the dense probes and the
    # dense fine-tuning, not the classification evaluations (at their native size those take hours on a CPU).
    anchors: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)  # the config as read (after --quick), for the run files

    @property
    def records(self) -> Path:
        return self.results / "records"

    @property
    def run_files(self) -> Path:
        return self.results / "runs"


def load_study(
    path: str | Path,
    *,
    quick: bool = False,
    root: Path = Path("."),
    work_dir: str | Path | None = None,
    results: str | Path | None = None,
) -> Study:
    """Read a study config; `quick` applies its `quick` overrides; `work_dir` / `results` replace the config's.
    Relative method configs resolve against `root`.

    Raises:
        UserError: a missing file, a missing key, a method config that does not exist, or a budget that is not a
            whole number of batches.
    """
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        raise UserError(f"study config {path} does not exist (e.g. configs/study/default.py)")
    cfg = Config.fromfile(str(path)).to_dict()
    if quick:
        cfg = merge(cfg, cfg.get("quick") or {})
    for key in ("methods", "arch", "image_size", "batch_size", "images_seen", "seeds", "evaluation", "work_dir"):
        if key not in cfg:
            raise UserError(f"study config {path} has no {key!r}")
    batch, images = int(cfg["batch_size"]), int(cfg["images_seen"])
    if batch < 1 or images < batch or images % batch:
        raise UserError(f"{path}: images_seen ({images}) must be a positive multiple of batch_size ({batch})")
    if not cfg["seeds"]:
        raise UserError(f"{path}: seeds is empty")
    work_dir = Path(work_dir or cfg["work_dir"]).expanduser()
    results = Path(results or cfg.get("results", "results")).expanduser()
    budget = {
        "arch": cfg["arch"],
        "image_size": int(cfg["image_size"]),
        "batch_size": batch,
        "images_seen": images,
        "steps": images // batch,
        "seeds": [int(s) for s in cfg["seeds"]],
        "precision": cfg.get("precision", "auto"),
    }
    runs = []
    for method, config in cfg["methods"].items():
        config = Path(config) if Path(config).is_absolute() else root / config
        if not config.is_file():
            raise UserError(f"{path}: the pre-training config of {method!r}, {config}, does not exist")
        for seed in budget["seeds"]:
            options = {
                "model.arch": budget["arch"],
                "model.img_size": budget["image_size"],
                "train_dataloader.batch_size": batch,
                "train_dataloader.dataset.image_size": budget["image_size"],
                "train_cfg.max_iters": budget["steps"],
                "randomness.seed": seed,
                "precision": budget["precision"],
                # Loss curves need logged points: every 10 steps, or a third of a short run.
                "default_hooks.logger.interval": max(1, min(10, budget["steps"] // 3)),
            }
            runs.append(Run(method, seed, config, options, work_dir / "pretrain" / f"{method}-seed{seed}"))
    floors = list(cfg.get("floors", []))
    for floor in floors:
        check_floor(floor, budget, path)
    return Study(
        name=path.stem + ("-quick" if quick else ""),
        runs=runs,
        floors=floors,
        evaluation=dict(cfg["evaluation"]),
        dense=dict(cfg.get("dense") or {}),
        work_dir=work_dir,
        results=results,
        budget=budget,
        anchors=list(cfg.get("anchors", [])),
        source={k: v for k, v in cfg.items() if k != "quick"},
    )


def check_floor(spec: str, budget: dict[str, Any], path: Path) -> None:
    """A `random:` floor must be the study's encoder at the study's input size: one of another size would make
    every comparison with it unfair without anything failing. Raises `UserError` otherwise."""
    if not spec.startswith("random:"):
        return
    from rils_bench.checkpoint import CheckpointError
    from rils_bench.models.pretrained import parse_random_spec

    try:
        name, size = parse_random_spec(spec)
    except CheckpointError as err:
        raise UserError(f"{path}: floor {err}") from None
    if (name, size) != (budget["arch"], budget["image_size"]):
        want = f"random:{budget['arch']}@{budget['image_size']}"
        raise UserError(f"{path}: floor {spec!r} is not the study's encoder at its input size; write {want!r}")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` applied: nested dicts merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "methods":
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_stages(text: str) -> list[str]:
    """`pretrain,eval,tables` -> the stages in their fixed order.

    Raises:
        UserError: an unknown stage name.
    """
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(names) - set(STAGES))
    if unknown or not names:
        raise UserError(f"unknown stage(s) {unknown or text!r}; choose from {', '.join(STAGES)}")
    return [s for s in STAGES if s in names]
