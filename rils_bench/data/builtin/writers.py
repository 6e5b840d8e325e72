"""Writers for the formats users bring from their clusters, shared by every built-in set.

Every writer is deterministic: the same pixels and rows give byte-identical files (PNG without
timestamps, tar members with a fixed mtime, JSON with sorted keys), so a dataset's content hash
depends only on its inputs and seed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# Fixed tar mtime (2020-01-01) so shards are byte-identical run to run.
_TAR_MTIME = 1577836800.0
_SAFE = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """A lower-case folder/file-name-safe form of a class name or caption ("T-shirt/top" -> "t_shirt_top")."""
    return _SAFE.sub("_", text.lower()).strip("_") or "unnamed"


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    """Encode as PNG; PIL writes no timestamp, so equal pixels give equal bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_png(path: Path, image: Image.Image | np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image))


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_table(path: Path, rows: Iterable[dict[str, object]], columns: Sequence[str]) -> int:
    """Write a CSV (`.csv`) or TSV (`.tsv`) with a header; returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    delimiter = "\t" if path.suffix == ".tsv" else ","
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), delimiter=delimiter, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row[c] for c in columns})
            n += 1
    return n


def write_wds_shards(
    pattern: Path, samples: Iterable[tuple[str, bytes, str]], *, image_ext: str = "png", maxcount: int = 1000
) -> list[Path]:
    """Write WebDataset tar shards of `(key, image bytes, caption)`; returns the shard paths.

    `pattern` is a printf pattern such as `shards/train-%06d.tar`. Each sample is `<key>.<image_ext>`
    plus `<key>.txt`, the layout LAION-scale loaders (img2dataset, open_clip) read.
    """
    import webdataset as wds

    pattern.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    post = lambda fname: written.append(Path(fname))  # noqa: E731  (called once per finished shard)
    with wds.ShardWriter(str(pattern), maxcount=maxcount, verbose=0, post=post, mtime=_TAR_MTIME) as sink:
        for key, image, caption in samples:
            sink.write({"__key__": key, image_ext: image, "txt": caption})
    return written
