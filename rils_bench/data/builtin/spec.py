"""What a built-in dataset is: its description, sources and builder, and what a builder receives.

Types only: the builders (`classify_sets`, `imagetext_set`, ...) and the catalog import them, and the registry
imports the catalog, so imports run one way: spec <- builders <- catalog <- registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BuildContext:
    """What a builder gets. It writes only under `out`, and draws randomness only from `seed`."""

    out: Path
    archives: dict[str, Path]  # source name (a key of fetch.SOURCES) -> verified archive
    seed: int
    options: dict[str, Any] = field(default_factory=dict)


Counts = dict[str, Any]  # e.g. {"train": {"cat": 10, ...}, "val": {...}} or {"train": 400, "val": 100}


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    description: str
    format: str
    license: str
    sources: tuple[str, ...]  # keys of fetch.SOURCES; empty for generated sets
    build: Callable[[BuildContext], Counts]
    defaults: dict[str, Any] = field(default_factory=dict)  # options and their default values
    code_version: int = 1  # bump when the builder's output changes, so prepared copies become stale
