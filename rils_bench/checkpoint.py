"""The exported checkpoint format: tensor-only, so it loads with `torch.load(weights_only=True)`.

An exported checkpoint is a plain dict::

    {"format": "rils_bench/checkpoint/v1",
     "state_dict": {name: Tensor, ...},      # weights only
     "meta": {str: int | float | str | bool | None | list | dict}}   # model config, method, seed, ...

Nothing else is pickled, so a checkpoint from anywhere can be opened without executing code.

This module is the one place that reads tensor files (`read_tensor_file`), knows the key prefixes of the files we
read and write (`VISUAL_PREFIX`, `BACKBONE_PREFIX`, `strip_prefix`, `find_prefix`) and reports how a state dict met
a module (`KeyReport`, `compare_keys`, `load_strict`): the evaluation loader, the converter and the mmdet / mmseg
backbone all go through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rils_bench.errors import UserError
from rils_bench.fileio import atomic_write

FORMAT = "rils_bench/checkpoint/v1"
ENCODER_PREFIX = "encoder."  # an exported checkpoint's `ImageTextEncoder` (image encoder, text tower, projection)
VISUAL_PREFIX = ENCODER_PREFIX + "visual."  # its image encoder; below the prefix the keys are timm's
BACKBONE_PREFIX = "backbone."  # an mmdet / mmseg model's backbone (files written by `rils-bench convert`)
IMAGE_PREFIXES = (VISUAL_PREFIX, BACKBONE_PREFIX)  # tried in this order when a file's prefix is not given


class CheckpointError(UserError):
    """The file is missing, unreadable, or not a rils-bench checkpoint."""


def save_checkpoint(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write atomically: a reader never sees a half-written file, and a kill keeps the old one."""
    payload = {"format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}
    with atomic_write(path) as f:
        torch.save(payload, f)
    return Path(path)


def read_tensor_file(path: str | os.PathLike, *, expected: str = "a rils-bench checkpoint") -> Any:
    """`torch.load(path, weights_only=True)` on the CPU: the one reader of every checkpoint-like file.

    Raises:
        CheckpointError: a missing file, or one that is not a tensor-only torch file (corrupt, or it would need
            full unpickling, i.e. could run code); the message names `expected`, what the caller wanted.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and unpickler errors of many types
        hint = ""
        if "argparse.Namespace" in str(err):  # SLIP-style training checkpoints pickle their run's arguments
            hint = " (a RILS authors' / SLIP training checkpoint? pass it as rils-official:PATH)"
        raise CheckpointError(
            f"{path} is not a tensor-only torch file ({type(err).__name__}); expected {expected}{hint}"
        ) from err


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load an exported checkpoint with `weights_only=True`; raise `CheckpointError` with one clear line."""
    payload = read_tensor_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a rils-bench checkpoint (expected format {FORMAT!r})")
    return payload


def latest_export(work_dirs: str | os.PathLike) -> Path:
    """The most recently written exported checkpoint, `work_dirs/**/export/*.pth` (what `--ckpt` defaults to).

    Raises:
        UserError: there is none.
    """
    work_dirs = Path(work_dirs)
    exports = [p for p in work_dirs.glob("**/export/*.pth") if p.is_file()] if work_dirs.is_dir() else []
    if not exports:
        raise UserError(f"no --ckpt given and no exported checkpoint under {work_dirs}/: run `make pretrain` first")
    return max(exports, key=lambda p: p.stat().st_mtime_ns)


def strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of `state` whose key starts with `prefix`, with the prefix removed (all tensors for `""`)."""
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix) and torch.is_tensor(v)}


def unwrap_state_dict(payload: Any) -> dict[str, Any] | None:
    """The state dict inside a training file as people save them: under `state_dict` or `model` (nested or not),
    DDP's `module.` prefix stripped when every key has it. None when there is no dict."""
    while isinstance(payload, dict):
        inner = next((payload[w] for w in ("state_dict", "model") if isinstance(payload.get(w), dict)), None)
        if inner is None:
            break
        payload = inner
    if not isinstance(payload, dict):
        return None
    if payload and all(isinstance(k, str) and k.startswith("module.") for k in payload):
        payload = {k.removeprefix("module."): v for k, v in payload.items()}
    return payload


def find_prefix(state: dict[str, Any], candidates: tuple[str, ...] = IMAGE_PREFIXES) -> str:
    """The first of `candidates` that some key of `state` starts with; `""` (timm's bare names) if none does."""
    return next((p for p in candidates if any(k.startswith(p) for k in state)), "")


@dataclass
class KeyReport:
    """How the tensors of a file met a module, key by key: what every loader and the converter report.

    `missing`, `unexpected` and `mismatched` are errors; `ignored` keys were deliberately not used (with the
    reason), `new` parameters exist only in the module (e.g. relative position tables, zero-initialised),
    `resized` records interpolated position embeddings. `headline` replaces the default first line.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    resized: dict[str, str] = field(default_factory=dict)
    headline: str | None = None

    @property
    def ok(self) -> bool:
        """True when every parameter of the module came from the file and every tensor of the file was used."""
        return not (self.missing or self.unexpected or self.mismatched)

    def lines(self) -> list[str]:
        """Human-readable report: a summary line, then one line per key that was not simply loaded."""
        out = [
            self.headline
            or f"{self.source}: loaded {len(self.loaded)} tensors; missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
        ]
        out += [f"  missing key: {k}" for k in self.missing]
        out += [f"  unexpected key: {k}" for k in self.unexpected]
        out += [f"  shape mismatch: {k} ({why})" for k, why in self.mismatched.items()]
        out += [f"  ignored: {k} ({why})" for k, why in self.ignored.items()]
        out += [f"  new (not in the checkpoint, initialised): {k}" for k in self.new]
        out += [f"  resized: {k} ({how})" for k, how in self.resized.items()]
        return out

    def summary(self) -> str:
        """One line for an error message: the counts and the first few offending keys."""
        return (
            f"missing {self.missing[:5]}, unexpected {self.unexpected[:5]}, "
            f"shape-mismatched {list(self.mismatched)[:5]}"
        )


def compare_keys(state: dict[str, torch.Tensor], module: nn.Module, *, source: str = "state dict") -> KeyReport:
    """The key report of loading `state` into `module`, without loading: keys in module order."""
    expected = module.state_dict()
    mismatched = {
        k: f"file {tuple(v.shape)}, module {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    }
    return KeyReport(
        source=source,
        loaded=[k for k in state if k in expected and k not in mismatched],
        missing=[k for k in expected if k not in state],
        unexpected=[k for k in state if k not in expected],
        mismatched=mismatched,
    )


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], *, source: str, target: str) -> KeyReport:
    """Load `state` into `module` only if the keys and shapes match exactly; else `CheckpointError` naming them."""
    report = compare_keys(state, module, source=source)
    if not report.ok:
        raise CheckpointError(f"{source}: weights do not match {target} ({report.summary()})")
    module.load_state_dict(state, strict=True)
    return report
