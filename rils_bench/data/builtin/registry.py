"""The built-in datasets by name: lookup and listing over the catalog.

A builder receives a `BuildContext` (an empty directory to fill, the verified archives, the seed and options) and
returns its counts; `prepare.py` does everything around it (fetching, atomic rename, manifest, content hash).
Every built-in set is declared once, in `catalog.py`; `register` adds another (tests use it for toy sets).
"""

from __future__ import annotations

from rils_bench.data.builtin.catalog import CATALOG
from rils_bench.data.builtin.spec import BuildContext, BuiltinDataset, Counts
from rils_bench.errors import UserError

__all__ = ["BUILTINS", "BuildContext", "BuiltinDataset", "Counts", "all_datasets", "get", "register"]

BUILTINS: dict[str, BuiltinDataset] = {}


def register(dataset: BuiltinDataset) -> BuiltinDataset:
    if dataset.name in BUILTINS:
        raise ValueError(f"built-in dataset {dataset.name!r} registered twice")
    BUILTINS[dataset.name] = dataset
    return dataset


for _dataset in CATALOG:
    register(_dataset)


def get(name: str) -> BuiltinDataset:
    """Look up a built-in dataset; the error lists the valid names."""
    try:
        return BUILTINS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; built-in datasets: {', '.join(sorted(BUILTINS))}") from None


def all_datasets() -> list[BuiltinDataset]:
    return list(BUILTINS.values())
