"""What the frozen dense probes share (`segprobe`, `segknn`): an ADE20K-style set, frozen patch tokens, mIoU.

A set is `images/{training,validation}/*.png` + `annotations/{training,validation}/*.png` (class index per pixel,
`classes.json` beside them: the built-in `pasteade`, or any folder in that layout). Images are resized to the
probe's input side N (bicubic, the encoder's own normalisation); patch tokens come from the last block (or the
last few, concatenated) at N, `[N_img, G, G, D]` with G = N / patch. Scores are mmseg's own: `IoUMetric`'s
intersect-and-union per image at the label's full resolution, then mIoU / mAcc / aAcc over the split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from rils_bench.errors import UserError
from rils_bench.eval.features import ExtractOptions, pick_device, precision_of, transform_of
from rils_bench.eval.resolution import at_input_size
from rils_bench.models.pretrained import PretrainedInfo, load_pretrained
from rils_bench.precision import autocast
from rils_bench.report.record import make_record

SPLITS = {"train": "training", "val": "validation"}
BUILTIN_SETS = {"pasteade": "", "shapes": "ade"}  # built-in name -> the folder holding its ADE20K-style tree
PIXEL_PATCH = 8  # the pixels floor's "patch tokens": raw 8 x 8 RGB patches, the study encoders' patch


@dataclass
class SegSet:
    """An ADE20K-style split: image and label paths in the same order, the class names, a content hash."""

    name: str
    root: Path
    classes: list[str]
    images: list[Path]
    labels: list[Path]
    sha256: str | None

    def read_labels(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Labels `[N, H, W]` int64 at full resolution."""
        chosen = self.labels if indices is None else [self.labels[i] for i in indices]
        return np.stack([np.asarray(Image.open(p), dtype=np.int64) for p in chosen])


def resolve_seg_split(dataset: str, split: str) -> SegSet:
    """A built-in set (`pasteade`; `shapes`, drawn, for tests), prepared if needed, or `folder:PATH` in the ADE20K
    layout.

    Raises:
        UserError: an unknown set, a missing folder, images without labels.
    """
    if dataset.startswith("folder:"):
        root, sha, name = Path(dataset.removeprefix("folder:")).expanduser(), None, None
        if not root.is_dir():
            raise UserError(f"segmentation folder not found: {root}")
        from rils_bench.eval.datasets import folder_sha256

        sha, name = folder_sha256(root), root.resolve().name
    elif dataset in BUILTIN_SETS:
        from rils_bench.data.builtin import prepare

        base = prepare.prepared(dataset)
        root, sha, name = base / BUILTIN_SETS[dataset], prepare.read_manifest(base)["content_sha256"], dataset
    else:
        known = ", ".join(BUILTIN_SETS)
        raise UserError(f"unknown segmentation set {dataset!r}; known: {known}, or folder:PATH (ADE20K layout)")
    folder = SPLITS[split]
    images = sorted((root / "images" / folder).glob("*.png"))
    if not images:
        raise UserError(f"{root / 'images' / folder} holds no .png images")
    labels = [root / "annotations" / folder / p.name for p in images]
    missing = next((p for p in labels if not p.is_file()), None)
    if missing is not None:
        raise UserError(f"label missing for {missing.name}: {missing}")
    classes_file = root / "classes.json"
    if not classes_file.is_file():
        raise UserError(f"{classes_file} not found: a segmentation set names its classes there (index = label)")
    return SegSet(name, root, json.loads(classes_file.read_text(encoding="utf-8")), images, labels, sha)


@torch.inference_mode()
def patch_tokens(
    encoder: Any, paths: list[Path], *, blocks: int = 1, options: ExtractOptions | None = None, desc: str = "tokens"
) -> np.ndarray:
    """Frozen patch tokens of `paths` at the encoder's input side: `[N, G, G, D * blocks]` float32 (the last
    `blocks` blocks, final norm applied, concatenated; the pixels floor: raw `PIXEL_PATCH` patches)."""
    options = options or ExtractOptions()
    device, precision = pick_device(options.device), options.resolved_precision()
    transform, _ = transform_of(encoder.config)
    encoder = encoder.to(device).eval()
    out = []
    batches = range(0, len(paths), options.batch_size)
    for start in tqdm(batches, desc=desc, unit="batch", leave=False, disable=not options.progress):
        images = [transform(Image.open(p).convert("RGB")) for p in paths[start : start + options.batch_size]]
        with autocast(precision):
            tokens = _tokens(encoder, torch.stack(images).to(device), blocks)  # [B, L, D']
        grid = int(round(tokens.shape[1] ** 0.5))
        out.append(tokens.float().reshape(len(images), grid, grid, -1).cpu().numpy())
    return np.concatenate(out)


def _tokens(encoder: Any, images: torch.Tensor, blocks: int) -> torch.Tensor:
    if encoder.config.get("name", "").startswith("pixels"):
        return F.unfold(images, PIXEL_PATCH, stride=PIXEL_PATCH).transpose(1, 2)  # [B, L, 3 * p * p]
    return torch.cat(encoder.get_intermediate_layers(images, blocks), dim=-1)


def grid_histograms(labels: np.ndarray, grid: int, n_classes: int) -> np.ndarray:
    """The share of each class among the pixels of each patch: `[N, H, W]` labels -> `[N, G, G, C]` (rows sum to 1
    over the labelled pixels; ignored pixels, label >= C, count for no class)."""
    one_hot = F.one_hot(torch.from_numpy(labels).clamp(max=n_classes), n_classes + 1)[..., :n_classes]
    pooled = F.adaptive_avg_pool2d(one_hot.permute(0, 3, 1, 2).float(), grid)  # [N, C, G, G]
    total = pooled.sum(1, keepdim=True).clamp(min=1e-8)
    return (pooled / total).permute(0, 2, 3, 1).numpy()


def upsample_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-patch class scores `[N, C, G, G]` -> bilinearly upsampled to the label size, argmax: `[N, H, W]`."""
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False).argmax(1)


def seg_scores(predictions: list[np.ndarray] | np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, float]:
    """mIoU, mAcc, aAcc in percent with mmseg's `IoUMetric` arithmetic (classes absent from both prediction and
    label are left out of the means, as mmseg's nan handling does)."""
    from mmseg.evaluation.metrics import IoUMetric

    areas = [
        IoUMetric.intersect_and_union(torch.as_tensor(p), torch.as_tensor(y), n_classes, ignore_index=255)
        for p, y in zip(predictions, labels, strict=True)
    ]
    totals = [torch.stack([a[i] for a in areas]).sum(0) for i in range(4)]
    metrics = IoUMetric.total_area_to_metrics(*totals, metrics=["mIoU"])
    return {
        "mIoU": float(np.nanmean(metrics["IoU"]) * 100),
        "mAcc": float(np.nanmean(metrics["Acc"]) * 100),
        "aAcc": float(metrics["aAcc"] * 100),
    }


def mean_and_std(per_seed: dict[str, list[float]]) -> dict[str, float]:
    """`{metric: mean, metric_std: sample std (0 for one seed)}` over seeds."""
    out = {name: float(np.mean(v)) for name, v in per_seed.items()}
    return out | {f"{name}_std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for name, v in per_seed.items()}


@dataclass
class DenseProbe:
    """An encoder at its probe size and the two splits it is probed on."""

    encoder: Any
    info: PretrainedInfo
    train: SegSet
    val: SegSet

    @property
    def size(self) -> int:
        return int(self.encoder.config["img_size"])

    def record(self, *, task: str, setting: str, metrics: dict[str, float], per_seed: dict[str, list[float]],
               seeds: list[int], hyperparameters: dict[str, Any], tokens: str,
               options: ExtractOptions | None) -> dict[str, Any]:  # fmt: skip
        """The result record of a dense probe: the setting ends with the probe size, the config names it."""
        config = {"image_size": self.size, "tokens": tokens, "n_train": len(self.train.images),
                  "n_val": len(self.val.images), "classes": self.train.classes}  # fmt: skip
        return make_record(
            checkpoint=self.info, precision=precision_of(options), task=task, dataset=self.train.name, split="val",
            setting=f"{setting},{self.size}px", metrics=metrics, per_seed=per_seed, seeds=seeds,
            dataset_sha256=self.train.sha256, hyperparameters=hyperparameters, config=config,
        )  # fmt: skip


def open_dense_probe(*, ckpt: str, dataset: str, image_size: int | None, arch: str | None = None) -> DenseProbe:
    """Load `ckpt`, set it to `image_size` (None: its own), resolve both splits of `dataset`.

    Raises:
        UserError: a bad checkpoint, size or set.
    """
    encoder, info = load_pretrained(ckpt, arch=arch)
    at_input_size(encoder, image_size)
    return DenseProbe(encoder, info, resolve_seg_split(dataset, "train"), resolve_seg_split(dataset, "val"))
