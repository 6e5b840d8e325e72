"""Linear semantic segmentation on frozen patch tokens (DINOv2's linear head: BatchNorm + a 1x1 convolution on the
last block's patch tokens, or on the last four concatenated; logits upsampled bilinearly).

The head trains on train's tokens (computed once) against the labels at 4x the patch grid (nearest), with AdamW
and a cosine schedule. Its learning rate is chosen among `LEARNING_RATES` on a held-out 10 % of *train* (mIoU of
a head trained on the other 90 %), then the head is retrained on all of train with it, once per head seed; val is
read only for the final scores (mIoU / mAcc / aAcc at the labels' full resolution, mmseg's arithmetic).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rils_bench.errors import UserError
from rils_bench.eval.features import ExtractOptions
from rils_bench.eval.metrics import log_stderr
from rils_bench.eval.segmentation import (
    SegSet,
    mean_and_std,
    open_dense_probe,
    patch_tokens,
    seg_scores,
    upsample_argmax,
)
from rils_bench.report.record import write_record

LEARNING_RATES = (1e-3, 1e-2, 1e-1)
EPOCHS = 30
BATCH = 16
WEIGHT_DECAY = 1e-4
HOLDOUT = 0.1  # of train, for choosing the learning rate


def segprobe_setting(*, blocks: int = 1) -> str:
    """The record setting of a segprobe run, without its input size (`DenseProbe.record` appends `,<N>px`)."""
    return f"linear,{'last' if blocks == 1 else 'last4'}"


class LinearSegHead(nn.Module):
    """DINOv2's `BNHead` reduced to its linear case: BatchNorm over the token channels, then a 1x1 convolution."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.classifier = nn.Conv2d(dim, n_classes, kernel_size=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """`[B, G, G, D]` tokens -> `[B, C, G, G]` logits."""
        return self.classifier(self.norm(tokens.permute(0, 3, 1, 2)))


def train_head(
    tokens: np.ndarray, labels: np.ndarray, n_classes: int, *, lr: float, seed: int, epochs: int = EPOCHS
) -> LinearSegHead:
    """Fit a head on tokens `[N, G, G, D]` and full-resolution labels `[N, H, W]` (trained at 4G x 4G, nearest)."""
    torch.manual_seed(seed)
    grid = tokens.shape[1]
    side = min(4 * grid, labels.shape[1])
    targets = F.interpolate(torch.from_numpy(labels)[:, None].float(), size=(side, side), mode="nearest")
    targets = targets[:, 0].long()
    targets[targets >= n_classes] = 255  # ignored
    x = torch.from_numpy(tokens)
    head = LinearSegHead(x.shape[-1], n_classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    steps = epochs * math.ceil(len(x) / BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(BATCH):
            logits = F.interpolate(head(x[batch]), size=(side, side), mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, targets[batch], ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return head.eval()


@torch.inference_mode()
def predict(head: LinearSegHead, tokens: np.ndarray, size: tuple[int, int], batch: int = 32) -> np.ndarray:
    """Label maps `[N, H, W]` at `size`."""
    x = torch.from_numpy(tokens)
    return torch.cat([upsample_argmax(head(x[i : i + batch]), size) for i in range(0, len(x), batch)]).numpy()


def choose_lr(tokens: np.ndarray, labels: np.ndarray, n_classes: int, *, seed: int = 0) -> tuple[float, dict]:
    """The learning rate whose head, trained on 90 % of train, scores the best mIoU on the other 10 %."""
    order = np.random.default_rng(seed).permutation(len(tokens))
    held = max(1, round(HOLDOUT * len(tokens)))
    fit, check = np.sort(order[held:]), np.sort(order[:held])
    scores = {}
    for lr in LEARNING_RATES:
        head = train_head(tokens[fit], labels[fit], n_classes, lr=lr, seed=seed)
        scores[lr] = seg_scores(predict(head, tokens[check], labels.shape[1:]), labels[check], n_classes)["mIoU"]
    return max(scores, key=scores.get), {f"{lr:g}": round(v, 2) for lr, v in scores.items()}


def segprobe_evaluate(
    encoder: Any, train: SegSet, val: SegSet, *, blocks: int = 1, seeds: int = 3, options: ExtractOptions | None = None
) -> tuple[dict[str, float], dict[str, list[float]], float, dict[str, float]]:
    """Score `encoder` (already at its probe size): `(mean metrics with their std, per-seed values, the chosen
    learning rate, the hold-out mIoU of every candidate)`."""
    n_classes = len(train.classes)
    x_train = patch_tokens(encoder, train.images, blocks=blocks, options=options, desc="train tokens")
    x_val = patch_tokens(encoder, val.images, blocks=blocks, options=options, desc="val tokens")
    y_train, y_val = train.read_labels(), val.read_labels()
    lr, search = choose_lr(x_train, y_train, n_classes)
    per_seed: dict[str, list[float]] = {"mIoU": [], "mAcc": [], "aAcc": []}
    for seed in range(seeds):
        head = train_head(x_train, y_train, n_classes, lr=lr, seed=seed)
        for name, value in seg_scores(predict(head, x_val, y_val.shape[1:]), y_val, n_classes).items():
            per_seed[name].append(value)
    return mean_and_std(per_seed), per_seed, lr, search


def run_segprobe(
    *,
    ckpt: str,
    dataset: str = "pasteade",
    image_size: int | None = None,
    blocks: int = 1,
    seeds: int = 3,
    arch: str | None = None,
    options: ExtractOptions | None = None,
    records: Path | None = None,
    write: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, Any]:
    """The linear segmentation probe of `ckpt` on `dataset` at `image_size`; returns the record.

    Raises:
        UserError: a bad checkpoint, set or size; `blocks` not 1 or 4; seeds < 1.
    """
    if blocks not in (1, 4) or seeds < 1:
        raise UserError(
            f"segprobe reads the last block or the last 4 (--blocks 1|4), seeds >= 1; got {blocks}, {seeds}"
        )
    probe = open_dense_probe(ckpt=ckpt, dataset=dataset, image_size=image_size, arch=arch)
    metrics, per_seed, lr, search = segprobe_evaluate(
        probe.encoder, probe.train, probe.val, blocks=blocks, seeds=seeds, options=options
    )
    log(f"segprobe at {probe.size} px (lr {lr:g}, chosen on train's hold-out): mIoU {metrics['mIoU']:.2f}")
    record = probe.record(
        task="segprobe", setting=segprobe_setting(blocks=blocks), metrics=metrics, per_seed=per_seed,
        seeds=list(range(seeds)), options=options,
        tokens="last block, final norm" if blocks == 1 else "last 4 blocks, final norm, concatenated",
        hyperparameters={
            "lr": lr, "lr_search_mIoU": search, "epochs": EPOCHS, "batch": BATCH, "weight_decay": WEIGHT_DECAY,
            "selection": f"lr among {list(LEARNING_RATES)} by mIoU on a {HOLDOUT:.0%} hold-out of train; val unseen",
        },
    )  # fmt: skip
    if write:
        write_record(record, records)
    return record
