"""Pre-training datasets for mmengine: image-text pairs from a table or WebDataset shards.

Each sample is `{"inputs": uint8 [3, H, W], "data_samples": caption}`; normalisation happens in the model's data
preprocessor and tokenisation in the model (it knows its context length), so the data side never needs the
model's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmengine.dist import barrier, get_rank, get_world_size, is_distributed
from mmengine.registry import DATASETS
from torch.utils.data import Dataset, IterableDataset
from torchvision import transforms as T

from rils_bench.data.bad_samples import SHARD_SKIPS, SkipLog, skip_shard_error
from rils_bench.data.imagetext import ImageTextTable, webdataset_pairs
from rils_bench.errors import UserError


def train_transform(
    image_size: int, crop_scale: tuple[float, float] | None = (0.5, 1.0), hflip: bool = False
) -> T.Compose:
    """The pre-training augmentation, to uint8 `[3, H, W]`.

    `crop_scale=(lo, hi)`: a random resized crop covering `lo`..`hi` of the image (SLIP's (0.5, 1) for photos);
    `None`: the whole image resized to `image_size` square (for small, centred objects such as the built-in icons,
    where a crop cuts away what the caption names). `hflip`: a random horizontal flip.
    """
    bicubic = T.InterpolationMode.BICUBIC
    if crop_scale is None:
        steps = [T.Resize((image_size, image_size), interpolation=bicubic)]
    else:
        steps = [T.RandomResizedCrop(image_size, scale=tuple(crop_scale), interpolation=bicubic)]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.PILToTensor()])


def _prepare_builtin(name: str) -> Path:
    """Prepare a built-in set once: rank 0 builds it while the other ranks wait, then all read it."""
    from rils_bench.data.builtin.prepare import prepare

    if is_distributed() and get_rank() != 0:
        barrier()
        return prepare(name)  # up to date now: returns at once
    path = prepare(name)
    if is_distributed():
        barrier()
    return path


@DATASETS.register_module()
class ImageTextPairs(Dataset):
    """Pairs from a CSV/TSV table (`table=`) or from a built-in set (`builtin='imagetext'`, prepared if missing).

    A row whose image is missing or undecodable, or whose caption is not UTF-8, is skipped: the next row is read
    in its place, and the sample carries how many were skipped (see `rils_bench.data.bad_samples`).

    Attributes:
        content_sha256: the built-in set's content hash (recorded in the exported checkpoint); None for a table.
    """

    def __init__(
        self,
        *,
        table: str | None = None,
        builtin: str | None = None,
        split: str = "train",
        image_size: int = 64,
        crop_scale: tuple[float, float] | None = (0.5, 1.0),
        hflip: bool = False,
    ) -> None:
        if (table is None) == (builtin is None):
            raise UserError("ImageTextPairs needs exactly one of table= (a CSV/TSV path) or builtin= (a built-in name)")
        self.content_sha256 = None
        if builtin is not None:
            from rils_bench.data.builtin.prepare import read_manifest

            root = _prepare_builtin(builtin)
            table = root / f"{split}.csv"
            self.content_sha256 = read_manifest(root)["content_sha256"]
        self.pairs = ImageTextTable(table, transform=train_transform(image_size, crop_scale, hflip))
        self.skips = SkipLog()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        for offset in range(len(self)):
            try:
                image, caption = self.pairs[(index + offset) % len(self)]
            except UserError as err:  # names the file and row
                self.skips.skip(str(err))
                continue
            return {"inputs": image, "data_samples": caption, "skipped": self.skips.take()}
        raise UserError(f"no row of {self.pairs.table} could be read")


def _as_sample(pair: tuple[Any, str]) -> dict[str, Any]:
    return {"inputs": pair[0], "data_samples": pair[1], "skipped": SHARD_SKIPS.take()}


@DATASETS.register_module()
class ImageTextShards(IterableDataset):
    """Pairs streamed from WebDataset shards (LAION-scale runs): shards split across ranks and workers,
    shard order shuffled, samples shuffled through a buffer. Use with `sampler=None` in the dataloader config.
    A corrupt member, a sample without image or caption, or an unreadable / cut shard is skipped and counted
    (`rils_bench.data.bad_samples`).

    `num_samples` is the number of pairs in all shards together. A stream has no length of its own, but mmengine
    asks the dataloader for one while it builds the run; `len()` is this rank's nominal share,
    `num_samples // world_size`. The iteration-based loop never relies on it: when a rank's stream ends, the next
    pass over the shards starts (shard order reshuffled).
    """

    def __init__(
        self,
        *,
        urls: str | list[str],
        num_samples: int | None = None,
        image_size: int = 224,
        crop_scale: tuple[float, float] | None = (0.5, 1.0),
        hflip: bool = False,
        shuffle_buffer: int = 1000,
        seed: int = 0,
    ) -> None:
        self.content_sha256 = None
        self.num_samples = num_samples
        transform = train_transform(image_size, crop_scale, hflip)
        pairs = webdataset_pairs(urls, transform, shard_shuffle=100, seed=seed, handler=skip_shard_error)
        self.pipeline = (pairs.shuffle(shuffle_buffer) if shuffle_buffer else pairs).map(_as_sample)

    def __len__(self) -> int:
        if not self.num_samples or self.num_samples < 1:
            raise UserError(
                "ImageTextShards needs num_samples= (the number of pairs in the shards, e.g. 20_000_000): "
                "mmengine sizes the run with it"
            )
        return max(1, self.num_samples // get_world_size())

    def __iter__(self):
        return iter(self.pipeline)
