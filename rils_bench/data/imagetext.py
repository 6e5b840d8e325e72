"""Readers of image-text pairs, the built-in sets and a user's own alike: a CSV/TSV table or WebDataset shards.

Both yield `(image, caption)`: a PIL RGB image (or whatever `transform` makes of it) and a string.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from rils_bench.errors import UserError

Transform = Callable[[Image.Image], Any]
IMAGE_EXTENSIONS = "png;jpg;jpeg;webp"  # the WebDataset member suffixes taken as the image, first found wins


def read_rgb(path: Path, where: str = "") -> Image.Image:
    """Decode an image file completely, as RGB: a truncated file fails here, not later in the model.

    Raises:
        UserError: a missing, empty, truncated or non-image file, named (with `where`, e.g. the table row).
    """
    at = f" ({where})" if where else ""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"image file not found: {path}{at}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot decode image {path}{at}: {reason}") from None


class ImageTextTable(Dataset):
    """Map-style dataset over a CSV (`.csv`) or TSV (`.tsv`) with a header naming its columns.

    `filepath` values are absolute or relative to the table's folder; other columns are ignored. Images
    are opened when an item is read, so building the dataset touches only the table.

    Raises:
        UserError: at construction, when the table is missing or lacks a column; when an item is read, when its
            image path or caption is missing or empty, or its image file is missing or cannot be decoded (the
            message names the file and row).
    """

    def __init__(
        self,
        table: str | Path,
        transform: Transform | None = None,
        *,
        image_column: str = "filepath",
        caption_column: str = "caption",
    ) -> None:
        table = Path(table)
        if not table.is_file():
            raise UserError(f"image-text table not found: {table}")
        # surrogateescape: a caption that is not UTF-8 spoils its own row (the reader skips it), not the table.
        with open(table, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.DictReader(f, delimiter="\t" if table.suffix == ".tsv" else ",")
            missing = {image_column, caption_column} - set(reader.fieldnames or ())
            if missing:
                raise UserError(f"{table}: no column(s) {sorted(missing)}; the header has {reader.fieldnames}")
            # A short row gives None for the fields it lacks: kept, so that reading it names the row.
            rows = [(row[image_column], row[caption_column]) for row in reader]
        if not rows:  # an infinite sampler over nothing would spin forever
            raise UserError(f"image-text table {table} has a header but no rows")
        self.table = table
        self.paths = [table.parent / path if path else None for path, _ in rows]  # an absolute path stays as it is
        self.captions = [caption for _, caption in rows]
        self.transform = transform

    def row_problem(self, index: int) -> str | None:
        """Why row `index` is not a usable pair without opening its image (no image path; a missing, empty or
        non-UTF-8 caption), naming the row; None when the row is complete."""
        where = f"row {index + 1} of {self.table}"
        caption = self.captions[index]
        if self.paths[index] is None:
            return f"no image path ({where})"
        if caption is None or not caption.strip():
            return f"{'no' if caption is None else 'empty'} caption ({where})"
        try:
            caption.encode("utf-8")
        except UnicodeEncodeError:
            return f"caption is not UTF-8 ({where})"
        return None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, str]:
        problem = self.row_problem(index)
        if problem is not None:
            raise UserError(problem)
        rgb = read_rgb(self.paths[index], f"row {index + 1} of {self.table}")
        return (self.transform(rgb) if self.transform else rgb), self.captions[index]


def _identity(x: Any) -> Any:  # a named function, not a lambda: dataloader workers may need to pickle it
    return x


def webdataset_pairs(
    urls: str | Path | Sequence[str | Path],
    transform: Transform | None = None,
    *,
    shard_shuffle: int = 0,
    seed: int | None = None,
    handler: Callable[[Exception], bool] | None = None,
) -> Any:
    """An iterable dataset of `(image, caption)` from WebDataset tar shards (an image member + `.txt`).

    `urls` is a shard path, a brace pattern (`shards/train-{000000..000011}.tar`) or a list of paths.
    Shards are split across distributed ranks and dataloader workers. `shard_shuffle` > 0 shuffles the
    shard order through a buffer of that many shards (seeded by `seed`); 0 keeps the order given.
    Sample-level shuffling is left to the caller (e.g. `.shuffle(1000)` on the result, which is a
    `webdataset.WebDataset` pipeline that further stages can be chained onto). `handler` is webdataset's error
    handler for every stage (reading a shard, decoding, assembling a sample); default: re-raise.
    """
    import webdataset as wds

    handler = handler or wds.reraise_exception
    shards = [str(u) for u in urls] if isinstance(urls, Sequence) and not isinstance(urls, str) else str(urls)
    dataset = wds.WebDataset(
        shards,
        shardshuffle=shard_shuffle or False,
        nodesplitter=wds.split_by_node,
        empty_check=False,
        seed=seed,
        handler=handler,
    )
    return (
        dataset.decode("pil", handler=handler)
        .to_tuple(IMAGE_EXTENSIONS, "txt", handler=handler)
        .map_tuple(transform or _identity, _identity, handler=handler)
    )
