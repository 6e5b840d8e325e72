"""Layer-wise learning-rate decay (BEiT, MAE, ViTDet) for a detector or segmentor with a `RILSViT` backbone.

Parameter `p` at depth `layer_id(p)` gets `lr * decay ** (num_layers + 1 - layer_id)`: the patch embedding, cls
token and position embedding are layer 0, block i is layer i + 1, and everything above the backbone (its final
norm, the neck, the heads) is layer `num_layers + 1`, trained at the full rate. ViTDet uses a decay of 0.7, MAE's
UperNet 0.65. `backbone_lr_mult` scales layers 0 to `num_layers` once more (the final norm and the heads keep
theirs): short schedules on small sets then train the new heads fast while a pre-trained encoder moves little,
so the score says more about what pre-training put in the encoder. No weight decay on the position
embedding, the cls token, norms and biases (every one-dimensional parameter); weight matrices and ViTDet's relative
position tables are decayed.

Works on parameter names (`backbone.blocks.3.attn.qkv.weight`), so one constructor serves mmdet and mmseg.
"""

from __future__ import annotations

import re
from typing import Any

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token")
_BLOCK = re.compile(r"blocks\.(\d+)\.")
_REL_POS = re.compile(r"rel_pos\.(\d+)\.")


def layer_id(name: str, num_layers: int, prefix: str = "backbone.") -> int:
    """Depth of a parameter for lr decay: 0 (embeddings), i + 1 (block i), `num_layers + 1` (everything else)."""
    if not name.startswith(prefix):
        return num_layers + 1
    name = name.removeprefix(prefix)
    if name.startswith(("patch_embed.", "norm_pre.", *NO_DECAY_NAMES)):  # norm_pre acts on the embeddings
        return 0
    match = _BLOCK.match(name) or _REL_POS.match(name)  # block i's relative position table belongs to block i
    return int(match.group(1)) + 1 if match else num_layers + 1


def no_weight_decay(name: str, ndim: int) -> bool:
    """Norm weights, biases (one-dimensional) and the position / cls embeddings are not weight-decayed."""
    return ndim <= 1 or name.endswith(".bias") or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    decay_rate: float,
    num_layers: int,
    prefix: str = "backbone.",
    backbone_lr_mult: float = 1.0,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups, one per (layer, decayed or not), highest lr first.

    Each group carries `lr`, `weight_decay`, and for logs `lr_scale`, `layer_id` and `param_names`. The first group
    has scale 1, so the lr that mmengine logs (that of group 0) is the base lr of the schedule.
    """
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = layer_id(name, num_layers, prefix)
        skip_decay = no_weight_decay(name, param.ndim)
        key = (layer, skip_decay)
        if key not in groups:
            scale = decay_rate ** (num_layers + 1 - layer) * (backbone_lr_mult if layer <= num_layers else 1.0)
            groups[key] = {
                "params": [],
                "param_names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "layer_id": layer,
                "weight_decay": 0.0 if skip_decay else weight_decay,
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return [groups[k] for k in sorted(groups, key=lambda k: (-k[0], k[1]))]


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine optimizer-wrapper constructor with layer-wise lr decay; registered for mmdet and mmseg.

    `paramwise_cfg`: `layer_decay_rate` (required), `num_layers` (default: `model.backbone.num_layers`, its number
    of blocks), `backbone_prefix` (default `"backbone."`), `backbone_lr_mult` (default 1). The optimizer's `lr` and
    `weight_decay` are the base values. Example::

        optim_wrapper = dict(
            constructor="LayerDecayOptimWrapperConstructor",
            optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
            paramwise_cfg=dict(layer_decay_rate=0.7))
    """

    def _validate_cfg(self) -> None:
        unknown = set(self.paramwise_cfg) - {"layer_decay_rate", "num_layers", "backbone_prefix", "backbone_lr_mult"}
        if unknown or "layer_decay_rate" not in self.paramwise_cfg:
            raise ValueError(
                "paramwise_cfg needs layer_decay_rate (optional num_layers, backbone_prefix, backbone_lr_mult); "
                f"got {unknown}"
            )
        if self.base_lr is None or self.base_wd is None:
            raise ValueError("layer decay needs the optimizer's lr and weight_decay")

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = "", **kwargs: Any) -> None:
        """Fill `params` with the decayed groups of the whole model (called once, on the top-level module)."""
        num_layers = self.paramwise_cfg.get("num_layers")
        if num_layers is None:
            num_layers = module.backbone.num_layers
        groups = param_groups(
            module,
            lr=self.base_lr,
            weight_decay=self.base_wd,
            decay_rate=self.paramwise_cfg["layer_decay_rate"],
            num_layers=num_layers,
            prefix=self.paramwise_cfg.get("backbone_prefix", "backbone."),
            backbone_lr_mult=self.paramwise_cfg.get("backbone_lr_mult", 1.0),
        )
        for group in groups:
            print_log(
                f"layer decay: layer {group['layer_id']:>2} lr x{group['lr_scale']:.4f} "
                f"wd {group['weight_decay']:g}: {len(group['params'])} tensors",
                logger="current",
            )
        params.extend(groups)
