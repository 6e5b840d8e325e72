"""ViTDet's simple feature pyramid: strides and widths for patch 16 and patch 8 backbones."""

from __future__ import annotations

import pytest
import torch

from rils_bench.adapters.neck import LayerNorm2d, SimpleFeaturePyramid


@pytest.mark.parametrize("patch", [16, 8])
def test_pyramid_strides(patch):
    neck = SimpleFeaturePyramid(48, 16, backbone_stride=patch, num_outs=5)
    neck.init_weights()
    image = 128
    outs = neck((torch.randn(2, 48, image // patch, image // patch),))
    assert [tuple(o.shape) for o in outs] == [(2, 16, image // s, image // s) for s in (4, 8, 16, 32, 64)]


def test_upsampling_halves_channels_per_step():
    neck = SimpleFeaturePyramid(64, 8, backbone_stride=16)
    first = neck.stages[0][0]  # stride 16 -> 4: two transposed convolutions
    convs = [m for m in first if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(64, 32), (32, 16)]
    with pytest.raises(ValueError, match="power of two"):
        SimpleFeaturePyramid(64, 8, backbone_stride=16, strides=(6,), num_outs=1)


def test_layernorm2d_normalises_channels():
    x = torch.randn(2, 5, 3, 4) * 7 + 3
    y = LayerNorm2d(5)(x)
    assert torch.allclose(y.mean(dim=1), torch.zeros(2, 3, 4), atol=1e-5)
    assert torch.allclose(y.var(dim=1, unbiased=False), torch.ones(2, 3, 4), atol=1e-3)


def test_a_patch_14_map_is_read_at_stride_16():
    """DINOv2's patch 14: a 128-px image padded to 140 px gives a 10 x 10 map; the pyramid reads it at stride 16
    (8 x 8, a power-of-two grid as the RPN and RoIAlign assume) and builds strides 4 .. 64 from there."""
    neck = SimpleFeaturePyramid(48, 16, backbone_stride=14, num_outs=5)
    neck.init_weights()
    assert neck.grid_stride == 16
    outs = neck((torch.randn(2, 48, 10, 10),))
    assert [tuple(o.shape[-2:]) for o in outs] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    # A map constant along x and linear in y stays so after resampling: pixel centres are mapped, not corners.
    ramp = torch.arange(10.0).view(1, 1, 10, 1).expand(1, 1, 10, 10)
    resampled = torch.nn.functional.interpolate(ramp, scale_factor=neck.resample, mode="bilinear")
    expected = ((torch.arange(8.0) + 0.5) * 16 / 14 - 0.5).clamp(0, 9)  # map row centre of output row j
    assert torch.allclose(resampled[0, 0, :, 0], expected, atol=1e-5)
