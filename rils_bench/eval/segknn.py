"""Dense nearest-neighbour retrieval on frozen patch tokens (Hummingbird: Balažević et al., "Towards In-context
Scene Understanding", NeurIPS 2023): no training at all.

The memory bank holds every patch token of (a fraction of) the train images, L2-normalised, each with the share of
each class among its pixels. A val patch takes its k = 30 most cosine-similar bank patches, weighted by
softmax(similarity / 0.02), and sums their class shares; the per-patch scores are upsampled bilinearly to the
label's resolution and the argmax is scored plainly (mIoU against the labels, no Hungarian matching: the
predictions are already in label space, and matching them again only lifts weak encoders). The search is exact,
in chunks of queries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rils_bench.errors import UserError
from rils_bench.eval.features import ExtractOptions
from rils_bench.eval.metrics import log_stderr
from rils_bench.eval.segmentation import (
    SegSet,
    grid_histograms,
    mean_and_std,
    open_dense_probe,
    patch_tokens,
    seg_scores,
    upsample_argmax,
)
from rils_bench.report.record import write_record

K = 30
TEMPERATURE = 0.02


@torch.inference_mode()
def knn_patch_scores(
    bank: np.ndarray, bank_shares: np.ndarray, queries: np.ndarray, *, k: int = K, temperature: float = TEMPERATURE,
    chunk: int = 4096,
) -> np.ndarray:  # fmt: skip
    """Class scores `[Q, C]` of query patches `[Q, D]` from a bank `[M, D]` with class shares `[M, C]`."""
    keys = torch.nn.functional.normalize(torch.from_numpy(bank).float(), dim=1)
    shares = torch.from_numpy(bank_shares).float()
    k = min(k, len(keys))
    out = []
    for start in range(0, len(queries), chunk):
        query = torch.nn.functional.normalize(torch.from_numpy(queries[start : start + chunk]).float(), dim=1)
        sims, idx = (query @ keys.T).topk(k, dim=1)  # [B, k]
        weights = (sims / temperature).softmax(dim=1)  # [B, k]
        out.append(torch.einsum("bk,bkc->bc", weights, shares[idx]))
    return torch.cat(out).numpy()


def segknn_setting(*, k: int = K, temperature: float = TEMPERATURE, fraction: float = 1.0) -> str:
    """The record setting of a segknn run, without its input size (`DenseProbe.record` appends `,<N>px`)."""
    return f"k={k},T={temperature:g},bank={fraction:g}"


def bank_subset(n_train: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of `fraction` of the train images (at least one), drawn with `seed`."""
    if not 0 < fraction <= 1:
        raise UserError(f"--fraction must be in (0, 1], got {fraction}")
    size = max(1, round(n_train * fraction))
    return np.sort(np.random.default_rng(seed).permutation(n_train)[:size])


def segknn_evaluate(
    encoder: Any, train: SegSet, val: SegSet, *, fraction: float = 1.0, seeds: list[int] = (0,), k: int = K,
    temperature: float = TEMPERATURE, options: ExtractOptions | None = None,
) -> tuple[dict[str, float], dict[str, list[float]]]:  # fmt: skip
    """Score `encoder` (already at its probe size): `(mean metrics with their std, per-seed values)`; one memory
    bank per subset seed (all seeds draw the same bank when `fraction` is 1)."""
    n_classes = len(train.classes)
    train_tokens = patch_tokens(encoder, train.images, options=options, desc="train tokens")  # [N, G, G, D]
    val_tokens = patch_tokens(encoder, val.images, options=options, desc="val tokens")
    grid, dim = train_tokens.shape[1], train_tokens.shape[-1]
    shares = grid_histograms(train.read_labels(), grid, n_classes)  # [N, G, G, C]
    labels = val.read_labels()
    per_seed: dict[str, list[float]] = {"mIoU": [], "mAcc": [], "aAcc": []}
    queries = val_tokens.reshape(-1, dim)
    for seed in seeds:
        chosen = bank_subset(len(train_tokens), fraction, seed)
        scores = knn_patch_scores(
            train_tokens[chosen].reshape(-1, dim), shares[chosen].reshape(-1, n_classes), queries,
            k=k, temperature=temperature,
        )  # fmt: skip
        scores = torch.from_numpy(scores).reshape(len(val_tokens), grid, grid, n_classes).permute(0, 3, 1, 2)
        predictions = upsample_argmax(scores, labels.shape[1:]).numpy()
        for name, value in seg_scores(predictions, labels, n_classes).items():
            per_seed[name].append(value)
    return mean_and_std(per_seed), per_seed


def run_segknn(
    *,
    ckpt: str,
    dataset: str = "pasteade",
    image_size: int | None = None,
    fraction: float = 1.0,
    seeds: int = 1,
    k: int = K,
    temperature: float = TEMPERATURE,
    arch: str | None = None,
    options: ExtractOptions | None = None,
    records: Path | None = None,
    write: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, Any]:
    """The dense kNN probe of `ckpt` on `dataset` at `image_size` (default the encoder's own); returns the record.

    Raises:
        UserError: a bad checkpoint, set or size; k < 1, T <= 0, a fraction outside (0, 1], seeds < 1.
    """
    if k < 1 or temperature <= 0 or seeds < 1:
        raise UserError(f"segknn needs k >= 1, T > 0 and seeds >= 1, got k={k}, T={temperature}, seeds={seeds}")
    bank_subset(1, fraction, 0)  # checks the fraction before anything is loaded
    probe = open_dense_probe(ckpt=ckpt, dataset=dataset, image_size=image_size, arch=arch)
    seed_list = list(range(seeds)) if fraction < 1 else [0]  # the whole bank is the same for every seed
    metrics, per_seed = segknn_evaluate(
        probe.encoder, probe.train, probe.val, fraction=fraction, seeds=seed_list, k=k, temperature=temperature,
        options=options,
    )  # fmt: skip
    log(f"segknn at {probe.size} px, bank {fraction:g} of train: mIoU {metrics['mIoU']:.2f}")
    record = probe.record(
        task="segknn", setting=segknn_setting(k=k, temperature=temperature, fraction=fraction), metrics=metrics,
        per_seed=per_seed, seeds=seed_list, tokens="last block, final norm", options=options,
        hyperparameters={
            "k": k, "temperature": temperature, "memory_bank_fraction": fraction,
            "selection": "fixed (Hummingbird's k and temperature), not tuned; exact search; scored without matching",
        },
    )  # fmt: skip
    if write:
        write_record(record, records)
    return record
