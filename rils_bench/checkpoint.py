"""The exported checkpoint format: tensor-only, so it loads with `torch.load(weights_only=True)`.

An exported checkpoint is a plain dict::

    {"format": "rils_bench/checkpoint/v1",
     "state_dict": {name: Tensor, ...},      # weights only
     "meta": {str: int | float | str | bool | None | list | dict}}   # model config, method, seed, ...

Nothing else is pickled, so a checkpoint from anywhere can be opened without executing code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from rils_bench.errors import UserError
from rils_bench.fileio import atomic_write

FORMAT = "rils_bench/checkpoint/v1"


class CheckpointError(UserError):
    """The file is missing, unreadable, or not a rils-bench checkpoint."""


def save_checkpoint(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write atomically: a reader never sees a half-written file, and a kill keeps the old one."""
    payload = {"format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}
    with atomic_write(path) as f:
        torch.save(payload, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load an exported checkpoint with `weights_only=True`; raise `CheckpointError` with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and unpickler errors of many types
        raise CheckpointError(f"{path} is not a tensor-only rils-bench checkpoint ({type(err).__name__})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a rils-bench checkpoint (expected format {FORMAT!r})")
    return payload
