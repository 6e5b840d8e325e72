"""Image-text retrieval: image -> text and text -> image Recall@1/5/10 on paired sets.

Every image has exactly one caption (pair i: image i, caption i). Images and captions are embedded with
`encode_image` / `encode_text`, L2-normalised and ranked by cosine similarity. A query's rank is the number of
candidates scored strictly higher than its own pair, so a tie counts in the query's favour; R@k is the percentage
of queries whose pair ranks within the first k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rils_bench.eval.datasets import PairSet, resolve_retrieval
from rils_bench.eval.features import ExtractOptions, embed_texts, extract_features, precision_of, transform_of
from rils_bench.eval.metrics import log_stderr, require_text_tower
from rils_bench.models.pretrained import PretrainedInfo, load_pretrained
from rils_bench.models.registry import ImageTextEncoder
from rils_bench.report.record import make_record, write_record

RECALL_AT = (1, 5, 10)


def pair_ranks(similarity: np.ndarray) -> np.ndarray:
    """Rank (0 = first) of the paired candidate `i` for each query row `i` of a square similarity matrix."""
    own = np.diag(similarity)[:, None]
    return (similarity > own).sum(axis=1)


def recall_metrics(image_emb: np.ndarray, text_emb: np.ndarray, ks: Sequence[int] = RECALL_AT) -> dict[str, float]:
    """`{"i2t_R@k": %, "t2i_R@k": %}` for paired, row-aligned embeddings (normalised here)."""
    images = F.normalize(torch.from_numpy(image_emb).float(), dim=1)
    texts = F.normalize(torch.from_numpy(text_emb).float(), dim=1)
    sim = (images @ texts.T).numpy()  # [N images, N texts]
    ranks = {"i2t": pair_ranks(sim), "t2i": pair_ranks(sim.T)}
    return {f"{d}_R@{k}": float(100.0 * np.mean(r < k)) for d, r in ranks.items() for k in ks}


def evaluate_pairs(
    encoder: ImageTextEncoder,
    info: PretrainedInfo,
    pairs: PairSet,
    options: ExtractOptions | None = None,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, float]:
    """Recall@k both ways on one pair set; image embeddings go through the feature cache."""
    image_emb = extract_features(
        encoder, info, pairs.paths, dataset_sha256=pairs.sha256, split=pairs.name, feature="embed", options=options
    ).features
    options = options or ExtractOptions()
    text_emb = embed_texts(encoder, pairs.captions, device=options.device, precision=options.precision)
    metrics = recall_metrics(image_emb, text_emb)
    log(f"retrieval {pairs.name} ({len(pairs.paths)} pairs): " + ", ".join(f"{k} {v:.1f}" for k, v in metrics.items()))
    return metrics


def run_retrieval(
    *,
    ckpt: str,
    dataset: str = "retrieval",
    arch: str | None = None,
    options: ExtractOptions | None = None,
    records: Path | None = None,
    write: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> list[dict[str, Any]]:
    """Retrieval of `ckpt` on every subset of `dataset`; one record per subset (written unless `write=False`).

    Raises:
        UserError: bad dataset or checkpoint, or an image-only checkpoint.
    """
    encoder, info = load_pretrained(ckpt, arch=arch)
    require_text_tower(encoder, info, "retrieval")
    sets = resolve_retrieval(dataset)
    out = []
    for pairs in sets:
        metrics = evaluate_pairs(encoder, info, pairs, options, log)
        out.append(
            make_record(
                checkpoint=info,
                precision=precision_of(options),
                task="retrieval",
                dataset=pairs.name,
                split="pairs",
                metrics=metrics,
                dataset_sha256=pairs.sha256,
                hyperparameters={"selection": "none (no trained parameters)"},
                config={
                    "n_pairs": len(pairs.paths),
                    "ranking": "cosine; ties count in the query's favour",
                    "transform": transform_of(encoder.config)[1],
                    "dataset_spec": pairs.spec,
                },
            )
        )
    if write:
        for record in out:
            write_record(record, records)
    return out
