"""The path every probe on frozen features takes (few-shot, linear, kNN): load the encoder, resolve the dataset,
extract train and val features through the cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rils_bench.eval.datasets import ClassificationSet, LabelledImages, resolve_classification
from rils_bench.eval.features import ExtractOptions, extract_features
from rils_bench.models.pretrained import PretrainedInfo, load_pretrained
from rils_bench.models.registry import ImageTextEncoder


@dataclass
class ProbeInputs:
    """A probe's inputs: `x_train[i]` belongs to `train_indices[i]` of `train` (all of train when that is None)."""

    encoder: ImageTextEncoder
    info: PretrainedInfo
    data: ClassificationSet
    train: LabelledImages
    val: LabelledImages
    x_train: np.ndarray  # [N_train, D]
    x_val: np.ndarray  # [N_val, D]
    train_indices: np.ndarray | None = None


def probe_inputs(
    *,
    ckpt: str,
    dataset: str,
    feature: str,
    arch: str | None = None,
    options: ExtractOptions | None = None,
    select_train: Callable[[LabelledImages, ClassificationSet], np.ndarray | None] | None = None,
) -> ProbeInputs:
    """Load `ckpt`, resolve `dataset`, extract `feature` for train and val.

    `select_train(train, data)` runs before any feature is computed: it validates (raising `UserError`) and may
    return sorted train indices to extract (few-shot needs only its sampled images); None means all of train.

    Raises:
        UserError: a bad checkpoint or dataset, or whatever `select_train` refuses.
    """
    encoder, info = load_pretrained(ckpt, arch=arch)  # before the dataset: preparing a built-in set takes a while
    data = resolve_classification(dataset)
    train, val = data.split("train"), data.split("val")
    indices = select_train(train, data) if select_train else None
    common = dict(dataset_sha256=data.sha256, feature=feature, options=options)
    x_train = extract_features(encoder, info, train.paths, split="train", indices=indices, **common).features
    x_val = extract_features(encoder, info, val.paths, split="val", **common).features
    return ProbeInputs(encoder, info, data, train, val, x_train, x_val, indices)
