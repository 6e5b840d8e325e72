"""Few-shot classification: k training images per class, a logistic-regression probe, top-1 on the full test split.

Protocol, per k and seed: sample exactly k images of every class from *train* (seeded; for one seed the k-shot
set is contained in every larger one), choose the L2 constant C by stratified cross-validation inside the k-shot
set, refit on the whole k-shot set, and measure top-1 on the whole `val` split. Results are mean ± std (sample
standard deviation) over seeds. Cross-validation uses min(k, 5) folds, each holding out an equal share of every
class: with k <= 5 that is leave-one-per-class-out. With k = 1 there is nothing to hold out, so C is fixed to
`DEFAULT_C` (scikit-learn's default) and the log and the record say so.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from rils_bench.errors import UserError
from rils_bench.eval.datasets import ClassificationSet
from rils_bench.eval.features import ExtractOptions, precision_of, transform_of
from rils_bench.eval.linear import C_GRID, LOGREG, MAX_ITER, best_c, fit_logistic, held_out_scores
from rils_bench.eval.metrics import log_stderr, top1
from rils_bench.eval.probe import open_probe
from rils_bench.models.pretrained import PretrainedInfo
from rils_bench.report.record import make_record, write_record

DEFAULT_C = 1.0
MAX_FOLDS = 5


def parse_shots(text: str) -> list[int]:
    """`"1,2,4"` -> `[1, 2, 4]` (sorted, unique). Raises `UserError` for anything but positive integers."""
    try:
        shots = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise UserError(f"--shots takes comma-separated positive integers, got {text!r}") from None
    if not shots or shots[0] < 1:
        raise UserError(f"--shots takes comma-separated positive integers, got {text!r}")
    return shots


def check_shots(shots: Sequence[int], labels: np.ndarray, folders: Sequence[str]) -> None:
    """Raise `UserError` when the largest k exceeds the smallest class of the training split."""
    counts = np.bincount(labels, minlength=len(folders))
    smallest = int(counts.argmin())
    if max(shots) > counts[smallest]:
        raise UserError(
            f"{max(shots)}-shot needs {max(shots)} training images per class, but class "
            f"{folders[smallest]!r} has only {counts[smallest]}"
        )


def sample_kshot(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices (sorted) of exactly `k` samples of every class in `labels`, drawn without replacement.

    Deterministic per seed, and nested: for one seed the k-shot set is contained in every k'-shot set, k' > k
    (each class is permuted once by the seed and its first k members taken), so shots differ only in size.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(int(labels.max()) + 1):  # ascending, so the RNG is consumed in a fixed order
        members = np.flatnonzero(labels == label)
        if len(members) < k:
            raise UserError(f"class {label} has {len(members)} samples, fewer than k={k}")
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen))


def select_c_cv(x: np.ndarray, y: np.ndarray, grid: Sequence[float], *, seed: int) -> tuple[float, str]:
    """C of `grid` with the best mean stratified-CV top-1 inside the few-shot set `(x, y)`; `(C, how it was chosen)`.

    Ties go to the lower mean held-out cross-entropy (`linear.best_c`). One sample per class: `DEFAULT_C`, and
    `how` says so.
    """
    k = int(np.bincount(y).min())
    if k < 2:
        return DEFAULT_C, f"fixed C={DEFAULT_C:g}: 1 image per class leaves nothing to cross-validate on"
    folds = min(k, MAX_FOLDS)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    grid = sorted(grid)
    accuracy, loss = np.zeros(len(grid)), np.zeros(len(grid))
    for fit, held in splitter.split(x, y):
        clf = None
        for i, c in enumerate(grid):  # ascending C, each fit warm-started from the previous solution
            clf = fit_logistic(x[fit], y[fit], c, init=clf)
            acc, xent = held_out_scores(clf, x[held], y[held])
            accuracy[i] += acc / folds
            loss[i] += xent / folds
    kind = "leave-one-per-class-out" if folds == k else f"{len(y) // folds} held out per fold"
    return best_c(grid, accuracy, loss), f"{folds}-fold stratified CV in the {k}-shot set ({kind})"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_fewshot(
    *,
    ckpt: str,
    dataset: str,
    shots: Sequence[int],
    seeds: int = 5,
    feature: str | None = None,
    c_grid: Sequence[float] = C_GRID,
    arch: str | None = None,
    options: ExtractOptions | None = None,
    records: Path | None = None,
    write: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> list[dict[str, Any]]:
    """Few-shot evaluation of `ckpt` on `dataset` for every k in `shots` and seeds `0..seeds-1`.

    Returns one record per k (written to `records` unless `write=False`). Every input is checked before a
    feature is computed or a file written.

    Raises:
        UserError: a bad dataset, checkpoint, seed count, or a k larger than the smallest training class.
    """
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    if not shots or min(shots) < 1:
        raise UserError(f"shots must be positive integers, got {list(shots)}")
    probe = open_probe(ckpt=ckpt, dataset=dataset, arch=arch)
    feature = probe.resolve_feature(feature)
    encoder, info, data, train, test = probe.encoder, probe.info, probe.data, probe.train, probe.val
    check_shots(shots, train.labels, data.folders)

    samples = {(k, s): sample_kshot(train.labels, k, s) for k in shots for s in range(seeds)}
    union = np.unique(np.concatenate(list(samples.values())))  # only these train images are embedded
    xtr, xte = probe.extract(feature=feature, options=options, train_indices=union)

    precision = precision_of(options)
    out = []
    for k in shots:
        trials = []
        for seed in range(seeds):
            picked = samples[k, seed]
            x, y = xtr[np.searchsorted(union, picked)], train.labels[picked]  # rows of xtr are `union`, sorted
            c, how = select_c_cv(x, y, c_grid, seed=seed)
            acc = top1(fit_logistic(x, y, c).predict(xte), test.labels)
            log(f"{k}-shot seed {seed}: C={c:g} ({how}); top-1 {acc:.2f}% on {len(test)} val images")
            trials.append(Trial(seed, acc, c, how, hashlib.sha256(picked.tobytes()).hexdigest()))
        out.append(fewshot_record(info, data, k, feature, trials, c_grid, len(test), encoder.config, precision))
    if write:
        for record in out:
            write_record(record, records)
    return out


@dataclass(frozen=True)
class Trial:
    """One (k, seed) few-shot run."""

    seed: int
    top1: float
    c: float
    how: str  # how C was chosen
    sample_sha256: str  # of the sampled train indices (int64), to check two runs drew the same images


def fewshot_record(
    info: PretrainedInfo,
    data: ClassificationSet,
    k: int,
    feature: str,
    trials: Sequence[Trial],
    c_grid: Sequence[float],
    n_test: int,
    encoder_config: dict[str, Any],
    precision: str = "fp32",
) -> dict[str, Any]:
    """The record of one k: mean ± sample std of top-1 over the trials, per-seed values, C and how it was chosen."""
    accs = [t.top1 for t in trials]
    mean, std = mean_std(accs)
    return make_record(
        checkpoint=info,
        precision=precision,
        task="fewshot",
        dataset=data.name,
        split="val",
        setting=f"{k}-shot,{feature}",
        metrics={"top1": mean, "top1_std": std},
        dataset_sha256=data.sha256,
        per_seed={"top1": accs, "C": [t.c for t in trials]},
        seeds=[t.seed for t in trials],
        hyperparameters={
            "C": [t.c for t in trials],
            "C_selection": sorted({t.how for t in trials}),
            "C_grid": list(c_grid),
            "max_iter": MAX_ITER,
        },
        config={
            "shots": k,
            "feature": feature,
            "classifier": LOGREG,
            "n_classes": len(data.classnames),
            "n_train": k * len(data.classnames),
            "n_test": n_test,
            "std": "sample standard deviation over seeds",
            "sample_sha256": [t.sample_sha256 for t in trials],
            "transform": transform_of(encoder_config)[1],
            "dataset_spec": data.spec,
        },
    )


def format_fewshot(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of few-shot records: shots, mean ± std, per-seed top-1 and C."""
    if not records:
        return "(no results)"
    first = records[0]
    lines = [
        f"few-shot top-1 (%) on {first['dataset']} {first['split']} ({first['config']['n_test']} images), "
        f"{first['checkpoint']['spec']}, {first['config']['feature']} features, {len(first['seeds'])} seed(s)",
        f"{'shots':>5}  {'mean ± std':>14}  per seed",
    ]
    for r in sorted(records, key=lambda r: r["config"]["shots"]):
        per_seed = " ".join(f"{v:.2f}" for v in r["per_seed"]["top1"])
        lines.append(
            f"{r['config']['shots']:>5}  {r['metrics']['top1']:>6.2f} ± {r['metrics']['top1_std']:<5.2f}  {per_seed}"
        )
    return "\n".join(lines)
