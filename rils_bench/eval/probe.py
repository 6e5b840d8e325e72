"""The path every probe on frozen features takes (few-shot, linear, kNN): load the encoder and resolve the dataset
(`open_probe`), check what the probe needs, then extract train and val features through the cache (`extract`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rils_bench.errors import UserError
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

    def resolve_feature(self, requested: str | None) -> str:
        """`requested`, or the feature the checkpoint's authors probe with (a foreign encoder's `default_feature`,
        e.g. DINOv2's cls token; `gap` for rils-bench checkpoints, what pre-training pools).

        Raises:
            UserError: `cls` of an encoder without a class token, `embed` of an image-only encoder.
        """
        feature = requested or self.encoder.config.get("default_feature", "gap")
        if feature == "cls" and not getattr(self.encoder, "has_class_token", True):
            raise UserError(f"--feature cls: {self.info.spec} has no class token; use gap")
        if feature == "embed" and self.encoder.config.get("embed_dim") is None:
            raise UserError(f"--feature embed: {self.info.spec} is image-only (no joint embedding); use gap or cls")
        return feature

    def train_subset(self, per_class: int | None, seed: int = 0) -> np.ndarray | None:
        """Sorted indices of at most `per_class` train images of every class (all of a smaller class), drawn with
        `seed`; None (all of train) when `per_class` is None. A cheaper linear probe or kNN memory bank on a large
        set; the record's setting names the cap."""
        if per_class is None:
            return None
        if per_class < 1:
            raise UserError(f"train_per_class must be a positive integer, got {per_class}")
        rng = np.random.default_rng(seed)
        labels = self.train.labels
        chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
        return np.sort(np.concatenate(chosen))

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
