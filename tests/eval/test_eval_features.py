"""Feature extraction: batched features equal a per-image computation, and the cache is keyed by every input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from eval_helpers import make_checkpoint
from PIL import Image

from rils_bench.eval.datasets import resolve_classification
from rils_bench.eval.features import ExtractOptions, cache_key, eval_transform, extract_features
from rils_bench.models.pretrained import load_pretrained

OPTIONS = ExtractOptions(batch_size=5, num_workers=0, device="cpu", progress=False, precision="fp32")


@pytest.fixture
def val():
    data = resolve_classification("shapes")
    return data, data.split("val")


def test_batched_features_equal_a_per_image_computation(rils_ckpt, val):
    data, split = val
    encoder, info = load_pretrained(rils_ckpt)
    transform, _ = eval_transform(encoder.config["img_size"])
    for feature in ("gap", "cls", "embed"):
        got = extract_features(
            encoder, info, split.paths, dataset_sha256=data.sha256, split="val", feature=feature, options=OPTIONS
        ).features
        assert got.shape == (16, 32) and got.dtype == np.float32
        with torch.no_grad():
            image = transform(Image.open(split.paths[7]).convert("RGB"))[None]  # [1, 3, 32, 32]
            tokens = encoder.forward_features(image)[0]  # [1+16, 32]
            direct = {"gap": tokens[1:].mean(0), "cls": tokens[0], "embed": encoder.encode_image(image)[0]}[feature]
        np.testing.assert_allclose(got[7], direct.numpy(), rtol=1e-4, atol=1e-5)


def test_transform_resizes_gray_to_rgb_and_normalises(tmp_path):
    Image.fromarray(np.full((28, 28), 255, np.uint8), mode="L").save(tmp_path / "white.png")
    transform, description = eval_transform(64)
    image = transform(Image.open(tmp_path / "white.png").convert("RGB"))
    assert image.shape == (3, 64, 64)
    np.testing.assert_allclose(
        image[:, 10, 10].numpy(),
        [(1 - 0.48145466) / 0.26862954, (1 - 0.4578275) / 0.26130258, (1 - 0.40821073) / 0.27577711],
        rtol=1e-5,
    )
    assert description == "rgb|resize64-bicubic-aa|centercrop64|openai-mean-std"


def test_cache_is_reused_when_nothing_changed_and_invalidated_when_the_checkpoint_bytes_change(tmp_path, val):
    data, split = val
    ckpt = make_checkpoint(tmp_path / "a.pt", seed=0)
    kwargs = dict(dataset_sha256=data.sha256, split="val", options=OPTIONS)
    first = extract_features(*load_pretrained(ckpt), split.paths, **kwargs)
    again = extract_features(*load_pretrained(ckpt), split.paths, **kwargs)
    assert not first.cached and again.cached and again.path == first.path
    np.testing.assert_array_equal(again.features, first.features)

    make_checkpoint(ckpt, seed=1)  # same path, other bytes
    changed = extract_features(*load_pretrained(ckpt), split.paths, **kwargs)
    assert not changed.cached and changed.path != first.path
    assert not np.allclose(changed.features, first.features)
    assert len(list((tmp_path / "features").glob("*.npz"))) == 2


def test_subset_is_sliced_from_a_cached_full_split(rils_ckpt, val):
    data, split = val
    encoder, info = load_pretrained(rils_ckpt)
    kwargs = dict(dataset_sha256=data.sha256, split="val", options=OPTIONS)
    subset = np.array([3, 0, 9])
    alone = extract_features(encoder, info, split.paths, indices=subset, **kwargs)
    full = extract_features(encoder, info, split.paths, **kwargs)
    sliced = extract_features(encoder, info, split.paths, indices=np.array([1, 2]), **kwargs)
    assert not alone.cached and not full.cached and sliced.cached and sliced.path == full.path
    np.testing.assert_allclose(alone.features, full.features[subset], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sliced.features, full.features[[1, 2]])


def test_corrupt_cache_file_is_recomputed(rils_ckpt, val):
    data, split = val
    kwargs = dict(dataset_sha256=data.sha256, split="val", options=OPTIONS)
    first = extract_features(*load_pretrained(rils_ckpt), split.paths, **kwargs)
    first.path.write_bytes(b"not an npz")
    again = extract_features(*load_pretrained(rils_ckpt), split.paths, **kwargs)
    assert not again.cached
    np.testing.assert_allclose(again.features, first.features, rtol=1e-6)


def test_cache_key_depends_on_every_input():
    base = dict(checkpoint="abc", dataset_sha256="d", split="val", transform="t", feature="gap")
    keys = {cache_key(**base)}
    for name, other in [
        ("checkpoint", "abd"),
        ("dataset_sha256", "e"),
        ("split", "train"),
        ("transform", "u"),
        ("feature", "cls"),
    ]:
        keys.add(cache_key(**{**base, name: other}))
    keys.add(cache_key(**base, indices=np.array([1, 2])))
    keys.add(cache_key(**base, indices=np.array([2, 1])))
    keys.add(cache_key(**base, precision="bf16"))
    assert len(keys) == 9
    assert cache_key(**base) == cache_key(**dict(reversed(base.items())))
    assert cache_key(**base, precision="fp32") == cache_key(**base)  # fp32 caches from before precisions stay valid


def test_bf16_features_are_cached_apart_and_close_to_fp32(rils_ckpt, val):
    data, split = val
    encoder, info = load_pretrained(rils_ckpt)
    common = dict(dataset_sha256=data.sha256, split="val", feature="gap")
    fp32 = extract_features(encoder, info, split.paths, **common, options=OPTIONS)
    bf16 = extract_features(encoder, info, split.paths, **common, options=replace(OPTIONS, precision="bf16"))
    assert not bf16.cached and bf16.path != fp32.path and bf16.features.dtype == np.float32
    assert not np.array_equal(bf16.features, fp32.features)  # really computed in bf16
    cosine = torch.nn.functional.cosine_similarity(torch.from_numpy(bf16.features), torch.from_numpy(fp32.features))
    assert cosine.min() > 0.99
