"""Weighted k-nearest-neighbour classification on frozen features (DINO's protocol).

Features are L2-normalised; each val image takes its k most cosine-similar train images, and each neighbour
votes for its class with weight `exp(similarity / T)`. DINO's defaults: k = 20, T = 0.07. No hyper-parameter is
fitted, so nothing is carved out of train.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rils_bench.errors import UserError
from rils_bench.eval.features import ExtractOptions, precision_of
from rils_bench.eval.metrics import accuracy_metrics, log_stderr, probe_config, train_cap
from rils_bench.eval.probe import open_probe
from rils_bench.report.record import make_record, write_record

K = 20
TEMPERATURE = 0.07


@torch.inference_mode()
def knn_scores(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    n_classes: int,
    *,
    k: int = K,
    temperature: float = TEMPERATURE,
    chunk: int = 1024,
) -> np.ndarray:
    """Class votes `[N_test, n_classes]`: the sum of `exp(cos / T)` over the k nearest train features of each class."""
    bank = torch.nn.functional.normalize(torch.from_numpy(train).float(), dim=1)  # [N, D]
    labels = torch.from_numpy(train_labels).long()
    k = min(k, len(bank))
    out = []
    for start in range(0, len(test), chunk):
        query = torch.nn.functional.normalize(torch.from_numpy(test[start : start + chunk]).float(), dim=1)
        sims, idx = (query @ bank.T).topk(k, dim=1)  # [B, k]
        votes = torch.zeros(len(query), n_classes).scatter_add_(1, labels[idx], (sims / temperature).exp())
        out.append(votes)
    return torch.cat(out).numpy() if out else np.zeros((0, n_classes), np.float32)


def run_knn(
    *,
    ckpt: str,
    dataset: str,
    feature: str | None = None,
    k: int = K,
    temperature: float = TEMPERATURE,
    train_per_class: int | None = None,
    arch: str | None = None,
    options: ExtractOptions | None = None,
    records: Path | None = None,
    write: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, Any]:
    """kNN evaluation of `ckpt` on `dataset` (train as the memory bank, val as queries); returns the record.

    `train_per_class` keeps at most that many train images per class in the memory bank (drawn with seed 0); the
    setting, and so the record key, names the cap.

    Raises:
        UserError: bad dataset or checkpoint, k < 1 or T <= 0.
    """
    if k < 1 or temperature <= 0:
        raise UserError(f"kNN needs k >= 1 and a positive temperature, got k={k}, T={temperature}")
    probe = open_probe(ckpt=ckpt, dataset=dataset, arch=arch)
    feature = probe.resolve_feature(feature)
    encoder, info, data, train, val = probe.encoder, probe.info, probe.data, probe.train, probe.val
    subset = probe.train_subset(train_per_class)
    ytr = train.labels if subset is None else train.labels[subset]
    xtr, xva = probe.extract(feature=feature, options=options, train_indices=subset)
    n_classes = len(data.classnames)
    scores = knn_scores(xtr, ytr, xva, n_classes, k=k, temperature=temperature)
    metrics = accuracy_metrics(scores, val.labels)
    log(f"knn: k={k}, T={temperature:g}: top-1 {metrics['top1']:.2f}% on {len(val)} val images")
    record = make_record(
        checkpoint=info,
        precision=precision_of(options),
        task="knn",
        dataset=data.name,
        split="val",
        setting=f"k={k},T={temperature:g},{feature}" + train_cap(train_per_class),
        metrics=metrics,
        dataset_sha256=data.sha256,
        hyperparameters={"k": k, "temperature": temperature, "selection": "fixed (DINO's defaults), not tuned"},
        config={**probe_config(data, train, val, feature, encoder.config), "n_train": len(ytr)},
    )
    if write:
        write_record(record, records)
    return record
