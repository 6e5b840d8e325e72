"""The frozen dense probes (`segknn`, `segprobe`): an encoder whose patch tokens encode the label scores ~100 mIoU,
a constant one the background-only score (computed by hand), and the CLI writes a record with the probe's size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from eval_helpers import run_cli
from PIL import Image
from torch import nn

from rils_bench.eval.resolution import at_input_size
from rils_bench.eval.segknn import segknn_evaluate
from rils_bench.eval.segmentation import resolve_seg_split, seg_scores
from rils_bench.eval.segprobe import segprobe_evaluate
from rils_bench.models.pretrained import load_pretrained

COLOURS = [(0, 0, 0), (230, 20, 20), (20, 230, 20), (20, 20, 230)]  # background + 3 classes
# 4 x 4 blocks of one class each, 2 x 2 patches of 8 px per block: every patch is pure. Probes upsample patch
# scores bilinearly, so even perfect tokens miss a few pixels at block corners (with 1 patch per block, ~9 %).
SIDE, BLOCK, PATCH = 64, 16, 8


def write_blocks_set(root, n_train=12, n_val=4, seed=0):
    """An ADE20K-layout set of 64 px images made of 16 px class blocks, each class its own colour, ~70 % background."""
    rng = np.random.default_rng(seed)
    for split, count in (("training", n_train), ("validation", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(count):
            blocks = np.where(rng.random((4, 4)) < 0.7, 0, rng.integers(1, 4, (4, 4)))
            blocks[0, 0], blocks[3, 3] = 1 + i % 3, 1 + (i + 1) % 3  # every class in every split
            label = np.kron(blocks, np.ones((BLOCK, BLOCK), dtype=np.int64)).astype(np.uint8)
            Image.fromarray(np.asarray(COLOURS, dtype=np.uint8)[label]).save(root / "images" / split / f"{i:03d}.png")
            Image.fromarray(label).save(root / "annotations" / split / f"{i:03d}.png")
    (root / "classes.json").write_text(json.dumps(["background", "red", "green", "blue"]))
    return root


class ConstantEncoder(nn.Module):
    """Every patch token the same: no information at all."""

    config = {"name": "constant", "img_size": SIDE}

    def get_intermediate_layers(self, images, indices=1, *, norm=True):
        return [torch.ones(len(images), (SIDE // PATCH) ** 2, 16)] * (indices if isinstance(indices, int) else 1)


@pytest.fixture
def blocks_set(tmp_path):
    root = write_blocks_set(tmp_path / "blocks")
    return resolve_seg_split(f"folder:{root}", "train"), resolve_seg_split(f"folder:{root}", "val")


def background_only(val) -> float:
    """mIoU (%) of predicting background everywhere, by hand: IoU_bg = background pixels / all pixels, 0 else."""
    labels = val.read_labels()
    return (labels == 0).mean() * 100 / len(val.classes)


def test_scores_follow_mmseg_on_a_hand_made_case():
    labels = np.zeros((1, 2, 4), np.int64)
    labels[0, :, 2:] = 1  # half background, half class 1
    prediction = np.zeros_like(labels)
    prediction[0, 0, 2:] = 1  # one row of class 1 found
    scores = seg_scores(prediction, labels, 2)
    # background: intersection 4, union 6; class 1: intersection 2, union 4
    assert scores["mIoU"] == pytest.approx((4 / 6 + 2 / 4) / 2 * 100)
    assert scores["aAcc"] == pytest.approx(6 / 8 * 100) and scores["mAcc"] == pytest.approx((1 + 0.5) / 2 * 100)


def test_segknn_of_label_encoding_tokens_is_perfect_and_of_constant_tokens_background_only(blocks_set):
    train, val = blocks_set
    pixels, _ = load_pretrained(f"pixels:{SIDE}")  # raw 8 px patches: here each one's colour names its class
    metrics, _ = segknn_evaluate(pixels, train, val, k=5)
    assert metrics["mIoU"] > 95 and metrics["aAcc"] > 99
    bank = len(train.images) * (SIDE // PATCH) ** 2
    constant, _ = segknn_evaluate(ConstantEncoder(), train, val, k=bank)  # the whole bank: the class prior
    assert constant["mIoU"] == pytest.approx(background_only(val))


@pytest.mark.slow
def test_segprobe_of_label_encoding_tokens_is_near_perfect_and_of_constant_tokens_background_only(blocks_set):
    train, val = blocks_set
    pixels, _ = load_pretrained(f"pixels:{SIDE}")
    metrics, per_seed, lr, search = segprobe_evaluate(pixels, train, val, seeds=2)
    assert metrics["mIoU"] > 95 and len(per_seed["mIoU"]) == 2 and f"{lr:g}" in search
    constant, *_ = segprobe_evaluate(ConstantEncoder(), train, val, seeds=1)
    assert constant["mIoU"] == pytest.approx(background_only(val))


def test_image_size_resamples_the_position_embedding_and_refuses_a_size_off_the_patch_grid():
    encoder, _ = load_pretrained("random:rils_vit_test_patch8")  # 32 px, patch 8
    before = encoder.visual.pos_embed.clone()
    at_input_size(encoder, 64)
    assert encoder.config["img_size"] == 64 and encoder.visual.pos_embed.shape == (1, 1 + 8 * 8, before.shape[-1])
    assert torch.equal(encoder.visual.pos_embed[:, 0], before[:, 0])  # the cls position is kept
    assert encoder.get_intermediate_layers(torch.randn(1, 3, 64, 64))[0].shape == (1, 64, before.shape[-1])
    with pytest.raises(Exception, match="not a positive multiple of the encoder's patch size"):
        at_input_size(encoder, 60)


def test_segknn_cli_writes_a_record_with_the_probe_size(tmp_path, capsys):
    root = write_blocks_set(tmp_path / "blocks")
    argv = ["segknn", "--ckpt", "random:rils_vit_test_patch8", "--dataset", f"folder:{root}", "--image-size", "64"]
    assert run_cli([*argv, "--k", "5"]) == 0
    assert "segknn (k=5,T=0.02,bank=1,64px)" in capsys.readouterr().out
    (path,) = (tmp_path / "records" / "segknn" / "blocks").glob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["image_size"] == 64 and record["setting"].endswith(",64px")
    assert run_cli([*argv[:-2], "--image-size", "60"]) == 2  # off the 8 px patch grid: one line, no record
    assert "not a positive multiple" in capsys.readouterr().err
