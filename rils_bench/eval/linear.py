"""Linear probe on frozen features: CLIP's L2-regularised multinomial logistic regression, or an SGD linear head.

Protocol (DINOv2's `log_regression`): the L2 constant C (or the SGD learning rate) is chosen on a stratified
held-out 10 % of *train*, the classifier is refit on all of train with that value, and top-1 is measured once
on `val`. The validation split never influences a hyper-parameter.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits
from torch import nn

from rils_bench.errors import UserError
from rils_bench.eval.features import ExtractOptions, pick_device, precision_of
from rils_bench.eval.metrics import accuracy_metrics, log_stderr, probe_config, top1, train_cap
from rils_bench.eval.probe import open_probe
from rils_bench.report.record import make_record, write_record

C_GRID = tuple(10.0**p for p in range(-6, 7))  # decades 1e-6 .. 1e6, as wide as CLIP's search
LR_GRID = (0.01, 0.1, 1.0)  # SGD head on standardised features
MAX_ITER = 1000
HOLDOUT = 0.1
LOGREG = "scikit-learn LogisticRegression(solver='lbfgs', L2, multinomial)"


def fit_logistic(
    x: np.ndarray, y: np.ndarray, c: float, *, max_iter: int = MAX_ITER, init: LogisticRegression | None = None
) -> LogisticRegression:
    """Fit multinomial L2 logistic regression with L-BFGS; `init` (same classes) warm-starts from its weights.

    Non-convergence at `max_iter` is accepted silently: with large C on separable few-shot data the optimum is
    at infinity and L-BFGS would never stop.
    """
    clf = LogisticRegression(C=c, l1_ratio=0.0, solver="lbfgs", max_iter=max_iter, warm_start=init is not None)
    if init is not None:
        clf.coef_, clf.intercept_, clf.classes_ = init.coef_.copy(), init.intercept_.copy(), init.classes_
    # Single-threaded on purpose: once torch is imported the process holds two OpenMP runtimes (torch's and
    # scikit-learn's) plus OpenBLAS, and their threads contend. Measured on 2 cores: a 16 x 32 few-shot fit ran 7x
    # and a 7200 x 192 linear-probe fit 48x slower multi-threaded. ImageNet-size sets use the SGD head instead.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def holdout_split(y: np.ndarray, fraction: float = HOLDOUT, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`(fit indices, held-out indices)`: a stratified `fraction` of the rows (at least one per class) held out.

    Raises:
        UserError: a class with fewer than two samples (it cannot be on both sides).
    """
    counts = np.bincount(y)
    if counts[counts > 0].min() < 2:
        raise UserError("every class needs at least 2 training images to hold some out for choosing C")
    n_classes = int((counts > 0).sum())
    n_held = min(len(y) - n_classes, max(n_classes, math.ceil(fraction * len(y))))
    fit, held = train_test_split(np.arange(len(y)), test_size=n_held, stratify=y, random_state=seed)
    return np.sort(fit), np.sort(held)


def held_out_scores(clf: LogisticRegression, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """`(top-1 %, mean cross-entropy)` of a fitted classifier on held-out `(x, y)`."""
    proba = clf.predict_proba(x)
    return top1(proba, y), float(log_loss(y, proba, labels=clf.classes_))


def best_c(grid: Sequence[float], accuracy: Sequence[float], loss: Sequence[float]) -> float:
    """The C of the best held-out top-1. Ties, common with a few held-out images, go to the lower held-out
    cross-entropy, then to the smaller C."""
    order = sorted(range(len(grid)), key=lambda i: (-round(accuracy[i], 6), loss[i], grid[i]))
    return float(grid[order[0]])


def select_c_holdout(
    x: np.ndarray, y: np.ndarray, grid: Sequence[float], *, fraction: float = HOLDOUT, seed: int = 0
) -> tuple[float, dict[str, float]]:
    """The C of `grid` with the best top-1 on a held-out `fraction` of `(x, y)` (ties: see `best_c`).

    Returns `(C, {repr(C): held-out top-1})`. The grid is walked in ascending order, each fit warm-started from the
    previous one (the solution path is smooth in C), which makes the whole sweep cost little more than one fit.
    """
    fit, held = holdout_split(y, fraction, seed)
    grid, clf, scores = sorted(grid), None, []
    for c in grid:
        clf = fit_logistic(x[fit], y[fit], c, init=clf)
        scores.append(held_out_scores(clf, x[held], y[held]))
    accuracy, loss = zip(*scores, strict=True)
    return best_c(grid, accuracy, loss), {repr(c): a for c, a in zip(grid, accuracy, strict=True)}


def train_sgd_head(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    lr: float,
    epochs: int = 30,
    batch_size: int = 1024,
    seed: int = 0,
    device: str | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """MAE's linear-probe head: features standardised with the fit set's statistics (BatchNorm without affine),
    one linear layer, SGD with momentum 0.9 and a cosine schedule, no weight decay. Returns `x -> scores [N, C]`.

    For feature sets too large for L-BFGS in memory (ImageNet-1k at ViT-L width): the features stay on the
    device in float32 and are visited in shuffled mini-batches.
    """
    dev = pick_device(device)
    gen = torch.Generator().manual_seed(seed)
    xs, ys = torch.from_numpy(x).float().to(dev), torch.from_numpy(y).long().to(dev)
    mean, std = xs.mean(0), xs.std(0) + 1e-6
    head = nn.Linear(x.shape[1], n_classes).to(dev)
    with torch.no_grad():  # the seeded initialisation, whatever the global RNG state
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen).to(dev) * 0.01)
        head.bias.zero_()
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    steps_per_epoch = math.ceil(len(xs) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=gen).to(dev)
        for start in range(0, len(xs), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(head((xs[batch] - mean) / std), ys[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()

    @torch.no_grad()
    def predict(features: np.ndarray) -> np.ndarray:
        return head((torch.from_numpy(features).float().to(dev) - mean) / std).cpu().numpy()

    return predict


def select_lr_holdout(
    x: np.ndarray, y: np.ndarray, n_classes: int, grid: Sequence[float], *, seed: int = 0, **train: Any
) -> tuple[float, dict[str, float]]:
    """The SGD learning rate of `grid` with the best top-1 on a held-out 10 % of `(x, y)`."""
    fit, held = holdout_split(y, HOLDOUT, seed)
    scores = {}
    for lr in sorted(grid):
        predict = train_sgd_head(x[fit], y[fit], n_classes, lr=lr, seed=seed, **train)
        scores[repr(lr)] = top1(predict(x[held]), y[held])
    return max(sorted(grid), key=lambda lr: scores[repr(lr)]), scores


def run_linear(
    *,
    ckpt: str,
    dataset: str,
    feature: str | None = None,
    classifier: str = "logreg",
    c_grid: Sequence[float] = C_GRID,
    lr_grid: Sequence[float] = LR_GRID,
    epochs: int = 30,
    seed: int = 0,
    train_per_class: int | None = None,
    arch: str | None = None,
    options: ExtractOptions | None = None,
    records: Path | None = None,
    write: bool = True,
    log: Callable[[str], None] = log_stderr,
) -> dict[str, Any]:
    """Linear probe of `ckpt` on `dataset` (train -> val); returns the record (written unless `write=False`).

    `train_per_class` fits on at most that many train images per class (drawn with `seed`) instead of all of
    train; the setting, and so the record key, names the cap.

    Raises:
        UserError: bad dataset or checkpoint, an unknown classifier, or a class too small to hold out.
    """
    if classifier not in ("logreg", "sgd"):
        raise UserError(f"unknown classifier {classifier!r}; choose logreg or sgd")
    probe = open_probe(ckpt=ckpt, dataset=dataset, arch=arch)
    feature = probe.resolve_feature(feature)
    encoder, info, data, train, val = probe.encoder, probe.info, probe.data, probe.train, probe.val
    subset = probe.train_subset(train_per_class, seed)
    ytr = train.labels if subset is None else train.labels[subset]
    holdout_split(ytr)  # fail on a too-small class before any feature is computed
    xtr, xva = probe.extract(feature=feature, options=options, train_indices=subset)
    n_classes = len(data.classnames)
    fitted = "all of train" if subset is None else f"{len(ytr)} train images (<= {train_per_class} per class)"
    how = f"chosen on a stratified held-out {HOLDOUT:.0%} of {fitted} (seed {seed}), then refit on {fitted}"
    if classifier == "logreg":
        best, scores = select_c_holdout(xtr, ytr, c_grid, seed=seed)
        clf = fit_logistic(xtr, ytr, best)
        scores_va = clf.predict_proba(xva)  # [N, C]
        hyper = {"C": best, "C_selection": how, "C_grid": list(c_grid), "holdout_top1": scores, "max_iter": MAX_ITER}
        hyper["final_fit_iterations"] = int(np.max(clf.n_iter_))  # == max_iter: stopped, not converged
        log(f"linear: C={best:g} {how}; held-out top-1 {scores[repr(best)]:.2f}%")
    else:
        train_args = dict(epochs=epochs, device=options.device if options else None)
        best, scores = select_lr_holdout(xtr, ytr, n_classes, lr_grid, seed=seed, **train_args)
        predict = train_sgd_head(xtr, ytr, n_classes, lr=best, seed=seed, **train_args)
        scores_va = predict(xva)
        hyper = {"lr": best, "lr_selection": how, "lr_grid": list(lr_grid), "holdout_top1": scores, "epochs": epochs}
        log(f"linear (sgd): lr={best:g} {how}; held-out top-1 {scores[repr(best)]:.2f}%")
    metrics = accuracy_metrics(scores_va, val.labels)
    record = make_record(
        checkpoint=info,
        precision=precision_of(options),
        task="linear",
        dataset=data.name,
        split="val",
        setting=(f"{classifier},{feature}" if classifier == "logreg" else f"{classifier},epochs={epochs},{feature}")
        + train_cap(train_per_class),
        metrics=metrics,
        dataset_sha256=data.sha256,
        seeds=[seed],
        hyperparameters=hyper,
        config={
            "classifier": LOGREG if classifier == "logreg" else "SGD linear head (standardised features)",
            **probe_config(data, train, val, feature, encoder.config),
            "n_train": len(ytr),
        },
    )
    if write:
        write_record(record, records)
    return record
