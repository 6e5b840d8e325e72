"""ViTDet's simple feature pyramid: strides 4, 8, 16, 32 (and max-pooled extra levels) from one ViT map.

A plain ViT has a single scale; ViTDet (Li et al., 2022) shows that deconvolutions / pooling of the last map
alone match a hierarchical backbone's FPN. The pyramid is built for any patch size: a map of stride p reaches
stride s by `log2(p / s)` stride-2 transposed convolutions (halving the channels each time, LayerNorm + GELU in
between) or by max pooling with kernel `s / p`. A patch size that is not a power of two (DINOv2's 14) is first
resampled bilinearly to the nearest power-of-two stride (14 -> 16: a map pixel j then covers image pixels
16 j .. 16 j + 15, as the RPN's anchors and RoIAlign's `1 / stride` assume).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a `[B, C, H, W]` map (ConvNeXt / ViTDet's "LN2d"); mmcv norm-config ready."""

    _abbr_ = "ln"

    def __init__(self, num_channels: int, eps: float = 1e-6, **kwargs) -> None:
        super().__init__(num_channels, eps=eps, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _rescale(channels: int, factor: float) -> tuple[nn.Module, int]:
    """(module, output channels) that scales a map by `factor`, a power of two."""
    steps = math.log2(factor)
    if steps != int(steps):
        raise ValueError(f"pyramid scale factor {factor} is not a power of two")
    steps = int(steps)
    if steps <= 0:
        return (nn.MaxPool2d(2**-steps) if steps else nn.Identity()), channels
    layers: list[nn.Module] = []
    for i in range(steps):
        if i:
            layers += [LayerNorm2d(channels), nn.GELU()]
        layers.append(nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2))
        channels //= 2
    return nn.Sequential(*layers), channels


class SimpleFeaturePyramid(BaseModule):
    """Multi-scale maps from the last ViT map, for mmdet's RPN and RoI heads.

    Args:
        in_channels: width of the backbone map.
        out_channels: width of every pyramid level.
        backbone_stride: stride of the backbone map (the patch size).
        strides: output strides built from the map (ViTDet: 4, 8, 16, 32).
        num_outs: number of levels returned; levels beyond `strides` are stride-2 subsamplings of the last one
            (ViTDet's `LastLevelMaxPool`, the P6 of the RPN).

    `forward` takes the backbone's tuple (its last element is used) and returns `num_outs` maps
    `[B, out_channels, H/s, W/s]`, finest first.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        backbone_stride: int = 16,
        strides: Sequence[int] = (4, 8, 16, 32),
        num_outs: int = 5,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        # Detectron2's c2_msra_fill for the convolutions, as ViTDet; the deconvolutions keep PyTorch's default.
        default_init = dict(type="Kaiming", layer="Conv2d", mode="fan_out", nonlinearity="relu", distribution="normal")
        super().__init__(init_cfg=init_cfg or default_init)
        if num_outs < len(strides):
            raise ValueError(f"num_outs={num_outs} is fewer than the {len(strides)} strides built")
        self.strides = tuple(strides)
        self.num_outs = num_outs
        # The map is read at `grid_stride`, a power of two: `backbone_stride` itself when it is one.
        self.grid_stride = 2 ** round(math.log2(backbone_stride))
        self.resample = backbone_stride / self.grid_stride  # 1.0, or e.g. 14 / 16
        self.stages = nn.ModuleList()
        for stride in self.strides:
            rescale, channels = _rescale(in_channels, self.grid_stride / stride)
            self.stages.append(
                nn.Sequential(
                    rescale,
                    nn.Conv2d(channels, out_channels, kernel_size=1, bias=False),
                    LayerNorm2d(out_channels),
                    nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                    LayerNorm2d(out_channels),
                )
            )

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        x = inputs[-1]
        if self.resample != 1.0:  # the given factor, not one recomputed from sizes: pixel centres stay aligned
            x = F.interpolate(x, scale_factor=self.resample, mode="bilinear", recompute_scale_factor=False)
        outs = [stage(x) for stage in self.stages]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
