"""The classifiers and metrics on synthetic features: logistic regression, C selection, k-shot sampling, kNN,
retrieval recall. Expected values are computed by hand or by a direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from rils_bench.errors import UserError
from rils_bench.eval.fewshot import DEFAULT_C, mean_std, parse_shots, sample_kshot, select_c_cv
from rils_bench.eval.knn import knn_scores
from rils_bench.eval.linear import best_c, fit_logistic, holdout_split, select_c_holdout, train_sgd_head
from rils_bench.eval.metrics import accuracy_metrics, top1, top5
from rils_bench.eval.retrieval import pair_ranks, recall_metrics


def blobs(n_per_class: int, n_classes: int = 5, dim: int = 16, seed: int = 0, spread: float = 0.3):
    """Well-separated Gaussian clusters: class c centred at 3 * e_c."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    centres = 3.0 * np.eye(n_classes, dim)
    return (centres[y] + spread * rng.standard_normal((len(y), dim))).astype(np.float32), y


def test_logistic_regression_separates_separable_features():
    x, y = blobs(10)
    x_test, y_test = blobs(40, seed=1)
    assert top1(fit_logistic(x, y, 1.0).predict(x_test), y_test) == 100.0


def test_logistic_regression_is_at_chance_on_random_labels():
    rng = np.random.default_rng(0)
    x, x_test = rng.standard_normal((400, 20)), rng.standard_normal((4000, 20))
    y, y_test = rng.integers(0, 4, 400), rng.integers(0, 4, 4000)
    acc = top1(fit_logistic(x, y, 1.0).predict(x_test), y_test)
    assert abs(acc - 25.0) < 3.0  # binomial std at n=4000 is 0.7 points


def test_sgd_head_separates_separable_features():
    x, y = blobs(20)
    x_test, y_test = blobs(40, seed=1)
    predict = train_sgd_head(x, y, 5, lr=0.1, epochs=20, batch_size=16, device="cpu")
    assert top1(predict(x_test), y_test) == 100.0


def test_accuracy_matches_a_direct_computation():
    labels = np.array([0, 1, 2, 2, 1])
    assert top1(np.array([0, 1, 1, 2, 0]), labels) == 60.0
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0], [1.0, 0.5, 0.0], [0.1, 0.8, 0.1]])
    assert top1(scores, labels) == 60.0  # argmax: 0, 2, 2, 0, 1
    six = np.tile(np.arange(6.0), (2, 1))  # classes ranked 5, 4, 3, 2, 1, 0
    assert top5(six, np.array([0, 1])) == 50.0  # class 0 ranks sixth


def test_accuracy_metrics_report_top5_only_from_five_classes():
    assert accuracy_metrics(np.eye(4), np.arange(4)) == {"top1": 100.0}  # top-5 of 4 classes would always be 100
    six = np.tile(np.arange(6.0), (2, 1))
    assert accuracy_metrics(six, np.array([5, 0])) == {"top1": 50.0, "top5": 50.0}


def test_kshot_sampler_draws_exactly_k_per_class_deterministically_and_nested():
    labels = np.array([0] * 7 + [1] * 4 + [2] * 9)
    rng = np.random.default_rng(3)
    labels = labels[rng.permutation(len(labels))]
    previous = None
    for k in (1, 2, 4):
        picked = sample_kshot(labels, k, seed=5)
        assert len(set(picked)) == len(picked) == 3 * k
        assert np.bincount(labels[picked], minlength=3).tolist() == [k, k, k]
        assert np.array_equal(picked, sample_kshot(labels, k, seed=5))
        if previous is not None:
            assert set(previous) <= set(picked)
        previous = picked
    draws = {tuple(sample_kshot(labels, 2, seed=s)) for s in range(10)}
    assert len(draws) > 5  # seeds do change the sample
    with pytest.raises(UserError, match="fewer than k=5"):
        sample_kshot(labels, 5, seed=0)


@pytest.mark.parametrize("text", ["0", "a", "", "1,,2", "-1", "2,0", "1.5"])
def test_parse_shots_rejects_bad_values(text):
    with pytest.raises(UserError, match="positive integers"):
        parse_shots(text)


def test_parse_shots_sorts_and_deduplicates():
    assert parse_shots("4,1,2,1") == [1, 2, 4]
    assert parse_shots(" 16") == [16]


def whitening_needed(n_per_class: int, seed: int):
    """Two classes told apart by a low-variance feature (means 0 / 0.2, std 0.02) next to a high-variance one
    (means 0 / 1, std 3). Strong regularisation leaves weights along the mean difference, dominated by the noisy
    feature (near chance); weak regularisation finds the clean one."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    x = np.stack([y + 3.0 * rng.standard_normal(len(y)), 0.2 * y + 0.02 * rng.standard_normal(len(y))], 1)
    return x, y


def test_c_selection_in_the_kshot_set():
    grid = (1e-6, 1e3)
    x, y = whitening_needed(4, seed=0)
    x_test, y_test = whitening_needed(500, seed=1)
    assert top1(fit_logistic(x, y, 1e-6).predict(x_test), y_test) < 60.0
    assert top1(fit_logistic(x, y, 1e3).predict(x_test), y_test) > 99.0
    assert select_c_cv(x, y, grid, seed=0) == (1e3, "4-fold stratified CV in the 4-shot set (leave-one-per-class-out)")
    one = select_c_cv(*whitening_needed(1, seed=0), grid, seed=0)
    assert one == (DEFAULT_C, "fixed C=1: 1 image per class leaves nothing to cross-validate on")
    _, how = select_c_cv(*blobs(8), grid, seed=0)
    assert how == "5-fold stratified CV in the 8-shot set (8 held out per fold)"


def test_holdout_split_is_stratified_and_disjoint():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    fit, held = holdout_split(y, 0.1, seed=0)
    assert len(held) == 10 and len(fit) == 90 and not set(fit) & set(held)
    assert np.bincount(y[held]).tolist() == [1, 2, 3, 4]
    fit, held = holdout_split(np.repeat(np.arange(8), 2), 0.1)  # 10 % of 16 < 8 classes: one of each held out
    assert np.bincount(np.repeat(np.arange(8), 2)[held]).tolist() == [1] * 8
    with pytest.raises(UserError, match="at least 2"):
        holdout_split(np.array([0, 0, 1]))


def test_c_selection_on_held_out_train():
    x, y = whitening_needed(50, seed=0)
    best, scores = select_c_holdout(x, y, (1e-6, 1e3, 1e5))
    assert scores["1e-06"] < 80.0 and scores["1000.0"] == scores["100000.0"] == 100.0
    assert best == 1e5  # tied at 100 %: on separable data the weaker penalty is surer, lower held-out cross-entropy


def test_best_c_breaks_accuracy_ties_by_cross_entropy_then_smaller_c():
    grid = [0.1, 1.0, 10.0]
    assert best_c(grid, [50.0, 75.0, 75.0], [1.0, 0.6, 0.4]) == 10.0
    assert best_c(grid, [50.0, 75.0, 74.9], [1.0, 0.6, 0.4]) == 1.0
    assert best_c(grid, [75.0, 75.0, 75.0], [0.5, 0.5, 0.5]) == 0.1
    assert best_c(grid, [0.1 + 0.2, 0.3, 0.0], [0.9, 0.8, 0.1]) == 1.0  # float noise in fold averages is a tie


def test_mean_std_is_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0)


def test_knn_votes_match_the_formula():
    angles = np.array([0.0, 0.1, 0.2, 3.0, 3.1])
    train = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1.0], [2.0], [1.0], [5.0], [1.0]])
    labels = np.array([0, 0, 1, 1, 2])
    query = np.array([[2.0, 0.0]])  # cosine with train i is cos(angle_i)
    scores = knn_scores(train, labels, query, 3, k=3, temperature=0.5, chunk=1)
    expected = [np.exp(np.cos(0.0) / 0.5) + np.exp(np.cos(0.1) / 0.5), np.exp(np.cos(0.2) / 0.5), 0.0]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-5)


def test_retrieval_recall_by_hand():
    n = 12
    eye = np.eye(n, dtype=np.float32)
    assert set(recall_metrics(eye, eye).values()) == {100.0}
    # Image i's nearest caption is caption i+1 (cyclic) and its own caption comes second: rank 1 for every query.
    texts = 0.8 * eye + np.roll(eye, -1, axis=0)  # caption j = 0.8 e_j + e_(j+1)... rows are texts
    sim = eye @ texts.T
    assert pair_ranks(sim).tolist() == [1] * n
    metrics = recall_metrics(eye, texts)
    assert metrics["i2t_R@1"] == 0.0 and metrics["i2t_R@5"] == 100.0
    assert pair_ranks(np.ones((3, 3))).tolist() == [0, 0, 0]  # ties count in the query's favour
