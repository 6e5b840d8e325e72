"""Layer-wise lr decay: the depth of every parameter, its lr scale and weight decay, and the mmengine build."""

from __future__ import annotations

import pytest
import torch
from dense_testing import ARCH
from torch import nn

from rils_bench.adapters.backbone import RILSViT
from rils_bench.adapters.layer_decay import layer_id, no_weight_decay, param_groups


class _Detector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = RILSViT(ARCH, with_cls_token=False, window_size=2, use_rel_pos=True)  # 2 blocks
        self.head = nn.Linear(32, 4)


def test_layer_ids():
    assert layer_id("backbone.patch_embed.proj.weight", 12) == 0
    assert layer_id("backbone.pos_embed", 12) == 0
    assert layer_id("backbone.cls_token", 12) == 0
    assert layer_id("backbone.blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("backbone.blocks.11.mlp.fc2.bias", 12) == 12
    assert layer_id("backbone.rel_pos.4.h", 12) == 5
    assert layer_id("backbone.norm.weight", 12) == 13
    assert layer_id("neck.stages.0.1.weight", 12) == 13
    assert layer_id("roi_head.bbox_head.fc_cls.weight", 12) == 13


def test_no_weight_decay_rules():
    assert no_weight_decay("backbone.pos_embed", 3) and no_weight_decay("backbone.cls_token", 3)
    assert no_weight_decay("backbone.blocks.0.norm1.weight", 1) and no_weight_decay("head.bias", 1)
    assert not no_weight_decay("backbone.blocks.0.attn.qkv.weight", 2)
    assert not no_weight_decay("backbone.rel_pos.0.h", 2)


def test_param_groups_scales_and_decay():
    model = _Detector()
    groups = param_groups(model, lr=1.0, weight_decay=0.1, decay_rate=0.5, num_layers=2)
    named = dict(model.named_parameters())
    seen = [name for group in groups for name in group["param_names"]]
    assert sorted(seen) == sorted(named)  # every parameter in exactly one group
    by_name = {name: group for group in groups for name in group["param_names"]}
    assert by_name["head.weight"]["lr"] == 1.0 and by_name["head.weight"]["weight_decay"] == 0.1
    assert by_name["backbone.blocks.1.attn.qkv.weight"]["lr"] == 0.5
    assert by_name["backbone.blocks.0.mlp.fc1.weight"]["lr"] == 0.25
    assert by_name["backbone.rel_pos.0.h"]["lr"] == 0.25 and by_name["backbone.rel_pos.0.h"]["weight_decay"] == 0.1
    assert by_name["backbone.patch_embed.proj.weight"]["lr"] == 0.125
    assert by_name["backbone.pos_embed"]["lr"] == 0.125 and by_name["backbone.pos_embed"]["weight_decay"] == 0.0
    assert by_name["backbone.blocks.0.norm1.weight"]["weight_decay"] == 0.0
    assert groups[0]["lr_scale"] == 1.0  # what mmengine logs as "lr" is the base lr


def test_backbone_lr_mult_scales_the_blocks_only():
    model = _Detector()
    plain = param_groups(model, lr=1.0, weight_decay=0.1, decay_rate=0.5, num_layers=2)
    slowed = param_groups(model, lr=1.0, weight_decay=0.1, decay_rate=0.5, num_layers=2, backbone_lr_mult=0.1)
    before = {name: group["lr"] for group in plain for name in group["param_names"]}
    after = {name: group["lr"] for group in slowed for name in group["param_names"]}
    for name, lr in before.items():
        in_blocks = name.startswith("backbone.") and layer_id(name, 2) <= 2
        assert after[name] == pytest.approx(lr * 0.1 if in_blocks else lr), name
    assert after["backbone.blocks.1.attn.qkv.weight"] == pytest.approx(0.05)
    assert after["head.weight"] == 1.0


@pytest.mark.parametrize("scope", ["mmdet", "mmseg"])
def test_built_through_the_registry(scope):
    import importlib

    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    importlib.import_module(f"rils_bench.adapters.{scope}")
    model = _Detector()
    config = dict(
        constructor="LayerDecayOptimWrapperConstructor",
        optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=0.7),
    )
    with DefaultScope.overwrite_default_scope(scope):
        wrapper = build_optim_wrapper(model, config)
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, torch.optim.AdamW)
    lrs = {group["layer_id"]: group["lr"] for group in optimizer.param_groups}
    assert lrs == pytest.approx({3: 1e-3, 2: 7e-4, 1: 4.9e-4, 0: 3.43e-4})
    with pytest.raises(ValueError, match="layer_decay_rate"), DefaultScope.overwrite_default_scope(scope):
        build_optim_wrapper(model, {**config, "paramwise_cfg": dict(decay_rate=0.7)})
