"""The built-in datasets: what each is, which packages it needs, and the function that builds it.

A builder receives a `BuildContext` (an empty directory to fill, the verified archives, the seed
and options) and returns its counts; `prepare.py` does everything around it (fetching, atomic
rename, manifest, content hash). Builders register themselves in `BUILTINS` below, explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rils_bench.errors import UserError


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


BUILTINS: dict[str, BuiltinDataset] = {}


def register(dataset: BuiltinDataset) -> BuiltinDataset:
    if dataset.name in BUILTINS:
        raise ValueError(f"built-in dataset {dataset.name!r} registered twice")
    BUILTINS[dataset.name] = dataset
    return dataset


def get(name: str) -> BuiltinDataset:
    """Look up a built-in dataset; the error lists the valid names."""
    _load_all()
    try:
        return BUILTINS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; built-in datasets: {', '.join(sorted(BUILTINS))}") from None


def all_datasets() -> list[BuiltinDataset]:
    _load_all()
    return list(BUILTINS.values())


def _load_all() -> None:
    # Imported here, not at module import, so `registry` stays cheap and free of cycles.
    from rils_bench.data.builtin import catalog  # noqa: F401  (registers every built-in set)
