"""The rows of `rils-bench data list`: one per built-in dataset, read from its manifest if prepared."""

from __future__ import annotations

from pathlib import Path

from rils_bench.data.builtin import fetch, prepare, registry


def _human_size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def rows(root: Path | None = None) -> list[dict[str, str]]:
    """name, state (prepared / stale / missing), size on disk, license and source packages of each set."""
    root = root or prepare.data_root()
    out = []
    for ds in registry.all_datasets():
        manifest = prepare.read_manifest(root / ds.name) or {}
        sources = ", ".join(fetch.SOURCES[s].spec for s in ds.sources) or "(generated)"
        out.append(
            {
                "name": ds.name,
                "state": prepare.state(ds.name, root),
                "size": _human_size(manifest["bytes"]) if "bytes" in manifest else "-",
                "license": ds.license,
                "sources": sources,
            }
        )
    return out
