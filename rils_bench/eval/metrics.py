"""What every evaluation harness shares: the progress log, accuracy metrics, a probe's record config, and the
check that a task which needs text has a text tower."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from rils_bench.errors import UserError
from rils_bench.eval.features import transform_of

if TYPE_CHECKING:
    from rils_bench.models.pretrained import PretrainedInfo
    from rils_bench.models.registry import ImageTextEncoder


def log_stderr(message: str) -> None:
    """Default progress log of the harnesses: one line on stderr (stdout carries the result table)."""
    print(message, file=sys.stderr, flush=True)


def top1(scores_or_pred: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent, from predicted labels `[N]` or class scores `[N, C]`."""
    pred = scores_or_pred.argmax(1) if scores_or_pred.ndim == 2 else scores_or_pred
    return float(100.0 * np.mean(pred == labels))


def top5(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-5 accuracy in percent from class scores `[N, C]`, C >= 5."""
    best5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return float(100.0 * np.mean((best5 == labels[:, None]).any(axis=1)))


def accuracy_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`top1`, and `top5` where the scores `[N, C]` have C >= 5 classes, in percent."""
    metrics = {"top1": top1(scores, labels)}
    if scores.shape[1] >= 5:
        metrics["top5"] = top5(scores, labels)
    return metrics


def probe_config(data: Any, train: Any, val: Any, feature: str, encoder_config: dict[str, Any]) -> dict[str, Any]:
    """The record's `config` for a probe fitted on `train` and scored on `val` of `data`."""
    return {
        "feature": feature,
        "n_train": len(train),
        "n_val": len(val),
        "n_classes": len(data.classnames),
        "transform": transform_of(encoder_config)[1],
        "dataset_spec": data.spec,
    }


def train_cap(train_per_class: int | None) -> str:
    """The part of a probe's setting that names a per-class cap on train (empty for all of train: old keys hold)."""
    return "" if train_per_class is None else f",train<={train_per_class}/class"


def require_text_tower(encoder: ImageTextEncoder, info: PretrainedInfo, task: str) -> None:
    """Raise `UserError` when the encoder is image-only (MAE, a timm ViT): `task` needs a text tower."""
    if encoder.text is None:
        raise UserError(f"{task} needs a text tower; {info.spec} ({info.method}, {info.arch}) is image-only")
