"""`RILSViT`: the backbone computes what the pre-training encoder computes, and its dense-transfer changes."""

from __future__ import annotations

import pytest
import torch
from dense_testing import ARCH
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer_sam import window_partition, window_unpartition

from rils_bench.adapters.backbone import (
    DecomposedRelPos,
    RILSViT,
    resolve_global_indices,
    resolve_out_indices,
)
from rils_bench.adapters.loading import load_visual_state
from rils_bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _from_checkpoint(path, **kwargs) -> RILSViT:
    backbone = RILSViT(ARCH, init_cfg=dict(type="Pretrained", checkpoint=str(path)), **kwargs)
    backbone.init_weights()
    return backbone.eval()


def _as_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    return feature_map.flatten(2).transpose(1, 2)  # [B, D, h, w] -> [B, h*w, D]


@pytest.mark.parametrize("final_norm", [True, False])
def test_features_equal_the_pretraining_encoder(exported, final_norm):
    path, encoder = exported
    backbone = _from_checkpoint(path, out_indices=(0, 1), final_norm=final_norm)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = encoder.get_intermediate_layers(images, [0, 1], norm=final_norm)
        actual = backbone(images)
    assert [tuple(f.shape) for f in actual] == [(3, 32, 4, 4)] * 2
    for want, got in zip(expected, actual, strict=True):
        assert torch.equal(_as_tokens(got), want)


def test_features_differ_when_a_tensor_is_mapped_wrongly(exported, tmp_path):
    path, encoder = exported
    payload = load_checkpoint(path)
    state = dict(payload["state_dict"])
    a, b = "encoder.visual.blocks.0.attn.qkv.weight", "encoder.visual.blocks.1.attn.qkv.weight"
    state[a], state[b] = state[b], state[a]  # the kind of mix-up a prefix or index bug makes
    swapped = tmp_path / "swapped.pth"
    save_checkpoint(swapped, state, payload["meta"])
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(_from_checkpoint(swapped)(images)[0], _from_checkpoint(path)(images)[0])


@pytest.mark.slow  # imports mmdet.models and mmseg.models
def test_mmdet_and_mmseg_build_the_same_class(exported):
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS

    import rils_bench.adapters.mmdet  # noqa: F401
    import rils_bench.adapters.mmseg  # noqa: F401

    path, encoder = exported
    config = dict(type="RILSViT", arch=ARCH, out_indices="last", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    images = torch.randn(1, 3, 32, 32)
    outputs = []
    for registry in (MMDET_MODELS, MMSEG_MODELS):
        backbone = registry.build(config)
        assert type(backbone) is RILSViT
        backbone.init_weights()
        with torch.no_grad():
            outputs.append(backbone.eval()(images)[0])
    with torch.no_grad():
        expected = encoder.get_intermediate_layers(images, 1)[0]
    assert torch.equal(_as_tokens(outputs[0]), expected) and torch.equal(outputs[0], outputs[1])


def test_position_embedding_interpolation_is_the_identity_at_the_pretraining_size(exported):
    path, encoder = exported
    pos = encoder.visual.pos_embed  # [1, 1+16, 32]
    assert resample_abs_pos_embed(pos, (4, 4), antialias=False) is pos
    backbone = _from_checkpoint(path)  # img_size defaults to the pre-training 32 px
    assert torch.equal(backbone.pos_embed.data, pos)
    # The bicubic path itself, forced at the same size, changes nothing either.
    grid = pos[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    same = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    assert torch.equal(same, grid)


def test_position_embedding_resized_at_load_and_per_input(exported):
    path, encoder = exported
    backbone = _from_checkpoint(path, img_size=64)  # an 8 x 8 grid from the 4 x 4 one
    pos = encoder.visual.pos_embed
    assert backbone.pos_embed.shape == (1, 1 + 64, 32)
    assert torch.equal(backbone.pos_embed.data[:, 0], pos[:, 0])  # the cls row is kept as is
    constant = torch.ones(1, 17, 5)
    assert torch.allclose(resample_abs_pos_embed(constant, (6, 3), antialias=False), torch.ones(1, 19, 5))
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 48, 40))[0].shape == (1, 32, 6, 5)


def test_loading_reports_and_refuses_missing_and_unexpected_keys(exported, tmp_path):
    path, _ = exported
    payload = load_checkpoint(path)
    state = dict(payload["state_dict"])
    del state["encoder.visual.blocks.1.mlp.fc2.bias"]
    state["encoder.visual.blocks.9.mlp.fc2.bias"] = torch.zeros(32)
    broken = tmp_path / "broken.pth"
    save_checkpoint(broken, state, payload["meta"])
    with pytest.raises(CheckpointError, match="1 missing, 1 unexpected"):
        _from_checkpoint(broken)
    visual = {k.removeprefix("encoder.visual."): v for k, v in state.items() if k.startswith("encoder.visual.")}
    report = load_visual_state(RILSViT(ARCH), visual)
    assert report.missing == ["blocks.1.mlp.fc2.bias"] and report.unexpected == ["blocks.9.mlp.fc2.bias"]
    assert not report.ok and "  missing key: blocks.1.mlp.fc2.bias" in report.lines()


def test_vitdet_options_report_what_they_drop_and_add(exported):
    path, _ = exported
    backbone = _from_checkpoint(path, with_cls_token=False, final_norm=False, window_size=2, use_rel_pos=True)
    visual = {
        k.removeprefix("encoder.visual."): v
        for k, v in load_checkpoint(path)["state_dict"].items()
        if k.startswith("encoder.visual.")
    }
    report = load_visual_state(backbone, visual)
    assert report.ok
    assert set(report.ignored) == {"cls_token", "norm.weight", "norm.bias"}
    assert report.new == ["rel_pos.0.h", "rel_pos.0.w", "rel_pos.1.h", "rel_pos.1.w"]


def test_window_attention_covering_the_grid_is_global_attention(exported):
    path, _ = exported
    global_attn = _from_checkpoint(path, with_cls_token=False, window_size=0)
    one_window = _from_checkpoint(path, with_cls_token=False, window_size=4, global_indices=())
    small_windows = _from_checkpoint(path, with_cls_token=False, window_size=2, global_indices=())
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = global_attn(images)[0]
        assert torch.allclose(one_window(images)[0], reference, atol=1e-6)
        assert not torch.allclose(small_windows(images)[0], reference, atol=1e-3)


def test_auto_windows_are_the_pretraining_grid_at_most_the_fine_tuning_grid():
    # ARCH is pre-trained at 32 px with patch 8: a 4 x 4 grid.
    assert RILSViT(ARCH, img_size=128, with_cls_token=False, window_size="auto").window_size == 4
    # A 16 px input has a 2 x 2 grid: a 4-patch window would only attend over zero padding as well.
    assert RILSViT(ARCH, img_size=16, with_cls_token=False, window_size="auto").window_size == 2
    assert RILSViT(ARCH, img_size=20, with_cls_token=False, window_size="auto").window_size == 3  # padded to 24 px


def test_window_partition_round_trip_with_padding():
    x = torch.randn(2, 5, 7, 3)
    windows, padded = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 3, 3, 3) and padded == (6, 9)
    assert torch.equal(window_unpartition(windows, 3, (5, 7), padded), x)
    assert torch.equal(windows[1], x[0, 0:3, 3:6])  # raster order of windows within an image


def test_zero_relative_position_tables_change_nothing(exported):
    path, _ = exported
    plain = _from_checkpoint(path, with_cls_token=False, window_size=2, global_indices=(1,))
    with_rel = _from_checkpoint(path, with_cls_token=False, window_size=2, global_indices=(1,), use_rel_pos=True)
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(with_rel(images)[0], plain(images)[0], atol=1e-6)
        with_rel.rel_pos[0].h.normal_()
        assert not torch.allclose(with_rel(images)[0], plain(images)[0], atol=1e-3)


def test_decomposed_relative_bias_by_hand():
    rel = DecomposedRelPos(size=2, head_dim=1)  # offsets -1, 0, 1 -> rows 0, 1, 2
    with torch.no_grad():
        rel.h.copy_(torch.tensor([[1.0], [10.0], [100.0]]))
        rel.w.copy_(torch.tensor([[2.0], [20.0], [200.0]]))
    q = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 4, 1)  # a 2 x 2 grid, raster order
    bias = rel(q, (2, 2))[0, 0]
    # token 1 = (y 0, x 1) attending token 2 = (y 1, x 0): dy = -1 -> h[0], dx = +1 -> w[2]
    assert bias[1, 2] == 2.0 * (1.0 + 200.0)
    # token 3 = (1, 1) attending itself: offsets 0
    assert bias[3, 3] == 4.0 * (10.0 + 20.0)


def test_out_and_global_indices():
    assert resolve_out_indices("uper", 12) == (3, 5, 7, 11)
    assert resolve_out_indices("uper", 24) == (7, 11, 15, 23)
    assert resolve_out_indices("uper", 2) == (0, 0, 0, 1)
    assert resolve_out_indices("last", 12) == (11,)
    assert resolve_out_indices((-1, 0), 4) == (3, 0)
    assert resolve_global_indices("auto", 12) == (2, 5, 8, 11)
    assert resolve_global_indices("auto", 24) == (5, 11, 17, 23)
    with pytest.raises(ValueError):
        resolve_out_indices((12,), 12)
    with pytest.raises(ValueError, match="with_cls_token=False"):
        RILSViT(ARCH, window_size=2)


def test_drop_path_is_active_only_in_training():
    backbone = RILSViT(ARCH, drop_path_rate=0.5)
    images = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    first = backbone.train()(images)[0]
    second = backbone(images)[0]
    assert not torch.allclose(first, second)
    with torch.no_grad():
        assert torch.equal(backbone.eval()(images)[0], backbone(images)[0])


def test_a_bf16_backbone_returns_fp32_maps_close_to_the_fp32_ones(exported):
    """CPU dense fine-tuning autocasts the backbone alone (mmcv's CPU kernels take fp32 only)."""
    path, _ = exported
    fp32, bf16 = _from_checkpoint(path, out_indices=(0, 1)), _from_checkpoint(path, out_indices=(0, 1))
    bf16.precision = "bf16"
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want, got = fp32(images), bf16(images)
    for a, b in zip(want, got, strict=True):
        assert b.dtype == torch.float32 and not torch.equal(a, b)
        assert torch.nn.functional.cosine_similarity(_as_tokens(a), _as_tokens(b), dim=-1).min() > 0.99
