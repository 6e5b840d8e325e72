"""Batched feature extraction with a disk cache keyed by a hash of every input.

One function serves every harness: `extract_features(encoder, info, images, ...)` runs the encoder's evaluation
interface over image files in batches under `torch.inference_mode()` and caches the `[N, D]` float32 result.
The cache key is a sha256 over the checkpoint's sha256 (or its `random:` spec and seed), the dataset's content
hash, the split, the transform description, the feature type, the precision (when not fp32) and, for a subset, the
indices: change any of them and the features are computed again; change nothing and they are read back.

Extraction runs in the precision `ExtractOptions.precision` resolves to (`rils_bench.precision`; default `auto`:
bf16 autocast on a CPU with native bf16 or a GPU, fp32 otherwise); features are always stored as float32.

Feature types:
- `gap`: mean of the final-normed patch tokens (cls excluded), unprojected `[N, width]`; what RILS, CLIP and
  MAE+CLIP pool during pre-training, so the default.
- `cls`: the final-normed cls token `[N, width]`.
- `embed`: `encode_image`, the pooled tokens projected into the joint image-text space `[N, embed_dim]` (not
  normalised); zero-shot and retrieval use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from rils_bench.data.imagetext import read_rgb
from rils_bench.errors import UserError
from rils_bench.fileio import atomic_write
from rils_bench.models.pretrained import PretrainedInfo
from rils_bench.models.registry import ImageTextEncoder
from rils_bench.precision import Precision, autocast, default_device, resolve

FEATURE_TYPES = ("gap", "cls", "embed")
CACHE_VERSION = 1  # bump when what a cached file holds changes meaning


def cache_root() -> Path:
    """`$RILS_BENCH_FEATURES`, default `~/.cache/rils_bench/features`."""
    return Path(os.environ.get("RILS_BENCH_FEATURES", Path.home() / ".cache" / "rils_bench" / "features"))


def pick_device(name: str | None = None) -> torch.device:
    """`name`, or CUDA when there is one, else the CPU.

    Raises:
        UserError: a name torch does not know, or a CUDA device on a machine without one.
    """
    if name:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise UserError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {name!r} asked for, but this machine has no CUDA device")
        return device
    return torch.device(default_device())


def transform_of(config: dict) -> tuple[v2.Compose, str]:
    """`eval_transform` for an encoder config: its `img_size`, and its own `image_mean` / `image_std` when it has
    them (a foreign checkpoint evaluated with the statistics its authors trained with), else CLIP's."""
    return eval_transform(config["img_size"], config.get("image_mean"), config.get("image_std"))


def eval_transform(
    img_size: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> tuple[v2.Compose, str]:
    """The evaluation transform and its description (part of the cache key).

    Any image -> RGB (gray is repeated), bicubic resize of the short side to `img_size`, centre crop, normalised
    with `mean` / `std` (default CLIP's: the normalisation pre-training uses). Built-in images are 28 or 64 px,
    so this mostly upsamples.
    """
    mean, std = tuple(mean or OPENAI_DATASET_MEAN), tuple(std or OPENAI_DATASET_STD)
    stats = "openai-mean-std" if (mean, std) == (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD) else f"mean{mean}-std{std}"
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(img_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(img_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )
    return transform, f"rgb|resize{img_size}-bicubic-aa|centercrop{img_size}|{stats}"


@dataclass(frozen=True)
class UnreadableImage:
    """What a worker returns for a file it cannot decode: the main process turns it into one clear error."""

    message: str


def _collate(items: list[torch.Tensor | UnreadableImage]) -> torch.Tensor | UnreadableImage:
    bad = [item for item in items if isinstance(item, UnreadableImage)]
    return bad[0] if bad else torch.stack(items)


class ImageFiles(Dataset):
    """Image files -> transformed `[3, H, W]` tensors, in the given order; an `UnreadableImage` for a file that
    cannot be decoded (missing, empty, truncated, not an image)."""

    def __init__(self, paths: Sequence[Path], transform: v2.Compose) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor | UnreadableImage:
        try:
            return self.transform(read_rgb(self.paths[index]))
        except UserError as err:  # raised in the main process, not in a worker (one line, not a worker traceback)
            return UnreadableImage(str(err))


@dataclass(frozen=True)
class ExtractOptions:
    """How to run extraction. Only `precision` changes the features (it is part of the cache key and the record)."""

    batch_size: int = 256
    num_workers: int | None = None  # None: `default_workers(device)`
    device: str | None = None  # None: CUDA when there is one, else the CPU
    cache: Path | None = None  # None: `cache_root()`
    progress: bool = True
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (rils_bench.precision)

    def resolved_precision(self) -> Precision:
        """`precision` resolved for the device extraction runs on."""
        return resolve(self.precision, pick_device(self.device))


def precision_of(options: ExtractOptions | None) -> str:
    """The precision a record names for an extraction with `options` (default options when None)."""
    return (options or ExtractOptions()).resolved_precision().name


@dataclass
class Features:
    """Extracted features: `features[i]` belongs to the i-th requested image."""

    features: np.ndarray  # [N, D] float32
    path: Path  # the cache file they were read from or written to
    cached: bool  # True when read back from the cache, False when computed now


def checkpoint_identity(info: PretrainedInfo) -> str:
    """The checkpoint's part of a cache key: its file's sha256, or for `random:<arch>` the spec and seed."""
    return info.sha256 or f"{info.spec}#seed={info.seed}"


def cache_key(
    *,
    checkpoint: str,
    dataset_sha256: str,
    split: str,
    transform: str,
    feature: str,
    precision: str = "fp32",
    indices: np.ndarray | None = None,
) -> str:
    """sha256 over every input that changes the features; `indices` (a subset, in order) only when given, and the
    precision only when it is not fp32 (so the fp32 features cached before precisions existed stay valid)."""
    inputs = {
        "version": CACHE_VERSION,
        "checkpoint": checkpoint,
        "dataset": dataset_sha256,
        "split": split,
        "transform": transform,
        "feature": feature,
    }
    if precision != "fp32":
        inputs["precision"] = precision
    if indices is not None:
        inputs["indices"] = hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def extract_features(
    encoder: ImageTextEncoder,
    info: PretrainedInfo,
    paths: Sequence[Path],
    *,
    dataset_sha256: str,
    split: str,
    feature: str = "gap",
    indices: np.ndarray | None = None,
    options: ExtractOptions | None = None,
) -> Features:
    """Features of `paths` (or of `paths[indices]`), read from the cache when every input is unchanged.

    A subset is sliced from a cached full split when one exists, so a linear probe's features serve a later
    few-shot run. `paths` must be the split's full, ordered file list: the cache key names the split, not files.
    """
    if feature not in FEATURE_TYPES:
        raise ValueError(f"unknown feature type {feature!r}; known: {FEATURE_TYPES}")
    transform, description = transform_of(encoder.config)
    options = options or ExtractOptions()
    precision = options.resolved_precision()
    key_args = dict(
        checkpoint=checkpoint_identity(info),
        dataset_sha256=dataset_sha256,
        split=split,
        transform=description,
        feature=feature,
        precision=precision.name,
    )
    root = options.cache or cache_root()
    full = root / f"{cache_key(**key_args)}.npz"
    target = full if indices is None else root / f"{cache_key(**key_args, indices=indices)}.npz"
    wanted = len(paths) if indices is None else len(indices)
    for candidate in dict.fromkeys([target, full]):
        stored = _read_cache(candidate)
        if stored is not None and candidate == target and len(stored) == wanted:
            return Features(stored, candidate, cached=True)
        if stored is not None and candidate == full and len(stored) == len(paths):
            return Features(stored[indices], candidate, cached=True)
    selected = list(paths) if indices is None else [paths[int(i)] for i in indices]
    values = compute_features(
        encoder,
        selected,
        transform=transform,
        feature=feature,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        device=options.device,
        progress=options.progress,
        desc=f"{split} features",
        precision=precision.name,
    )
    with atomic_write(target) as f:
        np.savez(f, features=values, inputs=np.asarray(json.dumps(key_args, sort_keys=True)))
    return Features(values, target, cached=False)


def _read_cache(path: Path) -> np.ndarray | None:
    """The cached features at `path`; None when there are none, or when the file cannot be read (truncated, empty,
    foreign), which is said in one line: the caller recomputes and rewrites it."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return np.asarray(stored["features"])
    # numpy raises zip, EOF, OS and value errors for damaged files, KeyError for a foreign archive
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        print(f"rils-bench: feature cache {path} is unreadable ({type(err).__name__}): recomputing it", file=sys.stderr)
        return None


def default_workers(device: torch.device) -> int:
    """DataLoader workers: decoding small PNGs is cheap next to a ViT on the CPU, so one helper there."""
    cpus = os.cpu_count() or 1
    return min(8, cpus - 1) if device.type == "cuda" else min(1, cpus - 1)


@torch.inference_mode()
def compute_features(
    encoder: ImageTextEncoder,
    paths: Sequence[Path],
    *,
    transform: v2.Compose,
    feature: str = "gap",
    batch_size: int = 256,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "features",
    precision: str = "auto",
) -> np.ndarray:
    """Run the encoder over `paths` in batches (no cache), in `precision`: `[N, D]` float32, rows in the order of
    `paths`.

    Raises:
        UserError: an image that cannot be decoded (named; nothing is cached or recorded for the run).
    """
    device = pick_device(str(device) if device is not None else None)
    workers = default_workers(device) if num_workers is None else num_workers
    loader = DataLoader(
        ImageFiles(paths, transform),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        collate_fn=_collate,
    )
    encoder = encoder.to(device).eval()
    resolved = resolve(precision, device)
    chunks = []
    bar = tqdm(loader, desc=desc, unit="batch", disable=not progress or not sys.stderr.isatty(), mininterval=1.0)
    for images in bar:
        if isinstance(images, UnreadableImage):
            raise UserError(images.message)
        images = images.to(device, non_blocking=True)
        with autocast(resolved):
            chunks.append(pool(encoder, images, feature).float().cpu())
    width = chunks[0].shape[1] if chunks else 0
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, width), np.float32)


def pool(encoder: ImageTextEncoder, images: torch.Tensor, feature: str) -> torch.Tensor:
    """One batch of features of type `feature` through the encoder's evaluation interface. `[B, 3, H, W] -> [B, D]`."""
    if feature == "embed":
        return encoder.encode_image(images)
    tokens = encoder.forward_features(images)  # [B, P+L, D]: P prefix tokens (cls, registers) first
    return tokens[:, 0] if feature == "cls" else tokens[:, getattr(encoder, "num_prefix_tokens", 1) :].mean(dim=1)


@torch.inference_mode()
def embed_texts(
    encoder: ImageTextEncoder,
    texts: Sequence[str],
    *,
    device: str | None = None,
    batch_size: int = 256,
    precision: str = "auto",
) -> np.ndarray:
    """`encode_text` of every text, in batches, in `precision`: `[N, E]` float32, not normalised. The one text loop
    of zero-shot (class prompts) and retrieval (captions)."""
    dev = pick_device(device)
    encoder = encoder.to(dev).eval()
    resolved = resolve(precision, dev)
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = encoder.tokenize(texts[start : start + batch_size]).to(dev)
        with autocast(resolved):
            chunks.append(encoder.encode_text(tokens).float().cpu())
    return torch.cat(chunks).numpy()
