"""The `pixels` floor (the image itself as the feature) and the per-class cap on train for linear and kNN."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import run_cli

from rils_bench.checkpoint import CheckpointError
from rils_bench.data.imagetext import read_rgb
from rils_bench.eval.datasets import resolve_classification
from rils_bench.eval.features import ExtractOptions, eval_transform
from rils_bench.eval.knn import run_knn
from rils_bench.eval.linear import run_linear
from rils_bench.eval.probe import open_probe
from rils_bench.models.pretrained import load_pretrained

FP32 = ExtractOptions(batch_size=8, num_workers=0, device="cpu", precision="fp32", progress=False)


def test_pixels_spec_gives_the_normalised_image_as_the_feature():
    encoder, info = load_pretrained("pixels:12")
    assert (info.kind, info.method, info.arch, info.sha256) == ("pixels", "pixels", "pixels_12px", None)
    probe = open_probe(ckpt="pixels:12", dataset="shapes")
    x_train, x_val = probe.extract(feature="gap", options=FP32, train_indices=np.array([0, 3]))
    transform, _ = eval_transform(12)
    by_hand = transform(read_rgb(probe.val.paths[5])).flatten().numpy()
    assert x_val.shape == (len(probe.val), 3 * 12 * 12) and x_train.shape == (2, 432)
    np.testing.assert_allclose(x_val[5], by_hand, rtol=0, atol=1e-6)
    assert getattr(encoder, "text", None) is None and load_pretrained("pixels")[0].config["img_size"] == 32


@pytest.mark.parametrize("spec", ["pixels:0", "pixels:abc", "pixels:"])
def test_bad_pixels_specs_are_refused(spec):
    if spec == "pixels:":  # the empty size means the default
        assert load_pretrained(spec)[0].config["img_size"] == 32
        return
    with pytest.raises(CheckpointError, match="pixels:<size>"):
        load_pretrained(spec)


def test_pixels_refuse_the_text_protocols(tmp_path, capsys):
    assert run_cli(["zeroshot", "--ckpt", "pixels:8", "--dataset", "shapes", "--workers", "0"]) == 2
    assert "image-only" in capsys.readouterr().err


def test_train_subset_caps_every_class_and_is_deterministic():
    probe = open_probe(ckpt="pixels:8", dataset="shapes")
    labels = probe.train.labels
    subset = probe.train_subset(3, seed=0)
    assert np.all(np.bincount(labels[subset]) == np.minimum(np.bincount(labels), 3))
    assert np.array_equal(subset, probe.train_subset(3, seed=0)) and np.all(np.diff(subset) > 0)
    assert not np.array_equal(subset, probe.train_subset(3, seed=1))
    assert probe.train_subset(None) is None


def test_capped_linear_and_knn_fit_on_the_subset_and_name_the_cap(rils_ckpt, tmp_path):
    full = run_linear(ckpt=str(rils_ckpt), dataset="shapes", options=FP32, write=False)
    capped = run_linear(ckpt=str(rils_ckpt), dataset="shapes", train_per_class=3, options=FP32, write=False)
    n_classes = len(resolve_classification("shapes").classnames)
    assert capped["config"]["n_train"] == 3 * n_classes < full["config"]["n_train"]
    assert capped["setting"] == full["setting"] + ",train<=3/class" and capped["key"] != full["key"]
    knn = run_knn(ckpt=str(rils_ckpt), dataset="shapes", k=2, train_per_class=3, options=FP32, write=False)
    assert knn["setting"].endswith(",train<=3/class") and knn["config"]["n_train"] == 3 * n_classes
