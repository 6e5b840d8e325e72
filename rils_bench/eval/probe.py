"""The path every probe on frozen features takes (few-shot, linear, kNN): load the encoder and resolve the dataset
(`open_probe`), check what the probe needs, then extract train and val features through the cache (`extract`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rils_bench.eval.datasets import ClassificationSet, LabelledImages, resolve_classification
from rils_bench.eval.features import ExtractOptions, extract_features
from rils_bench.models.pretrained import PretrainedInfo, load_pretrained
from rils_bench.models.registry import ImageTextEncoder


@dataclass
class Probe:
    """An encoder and the classification set it is probed on."""

    encoder: ImageTextEncoder
    info: PretrainedInfo
    data: ClassificationSet
    train: LabelledImages
    val: LabelledImages

    def extract(
        self, *, feature: str, options: ExtractOptions | None = None, train_indices: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(x_train [N, D], x_val [M, D])`; `x_train[i]` belongs to `train_indices[i]` (all of train if None)."""
        common = dict(dataset_sha256=self.data.sha256, feature=feature, options=options)
        x_train = extract_features(
            self.encoder, self.info, self.train.paths, split="train", indices=train_indices, **common
        ).features
        x_val = extract_features(self.encoder, self.info, self.val.paths, split="val", **common).features
        return x_train, x_val


def open_probe(*, ckpt: str, dataset: str, arch: str | None = None) -> Probe:
    """Load `ckpt`, then resolve `dataset` (the checkpoint first: preparing a built-in set takes a while).

    Raises:
        UserError: a bad checkpoint or dataset.
    """
    encoder, info = load_pretrained(ckpt, arch=arch)
    data = resolve_classification(dataset)
    return Probe(encoder, info, data, data.split("train"), data.split("val"))
