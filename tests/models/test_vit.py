"""The image encoder: sin-cos positions, masking, the masked and full paths, intermediate layers, the decoder."""

import math

import pytest
import torch

from rils_bench.models.vit import (
    MaskedDecoder,
    VisionTransformer,
    num_visible,
    random_masking,
    sincos_2d_pos_embed,
    unshuffle,
)

DEVICE = torch.device("cpu")


def small_vit(depth: int = 3) -> VisionTransformer:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, in_chans=3, width=32, depth=depth, heads=2, mlp_ratio=4.0)
    return vit.to(DEVICE).eval()


def images(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(DEVICE)


def test_sincos_layout_by_hand():
    # dim 8 -> 2 frequencies per half: omega = 1 / 10000**(k/2) = [1, 0.01]; columns first, then rows.
    embed = sincos_2d_pos_embed(8, grid_size=3)
    assert embed.shape == (10, 8)
    assert torch.equal(embed[0], torch.zeros(8))  # cls row
    row, col = 2, 1  # patch index 2*3 + 1 = 7, row-major like PatchEmbed's flatten
    expected = [math.sin(col), math.sin(0.01 * col), math.cos(col), math.cos(0.01 * col)]
    expected += [math.sin(row), math.sin(0.01 * row), math.cos(row), math.cos(0.01 * row)]
    torch.testing.assert_close(embed[1 + 7], torch.tensor(expected))


def test_sincos_rejects_width_not_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d_pos_embed(6, grid_size=2)


def test_position_embedding_is_fixed_and_saved():
    vit = small_vit()
    assert "pos_embed" in vit.state_dict()
    assert all(name != "pos_embed" for name, _ in vit.named_parameters())
    torch.testing.assert_close(vit.pos_embed[0], sincos_2d_pos_embed(32, 4))


@pytest.mark.parametrize(
    ("length", "ratio", "keep"),
    [(16, 0.75, 4), (64, 0.75, 16), (196, 0.75, 49), (10, 0.9, 1), (10, 0.25, 8), (16, 0.0, 16), (7, 0.5, 4)],
)
def test_num_visible_rounds_half_up(length, ratio, keep):
    # (10, 0.9): 10 * (1 - 0.9) = 0.9999999999999998, which int() would floor to 0.
    assert num_visible(length, ratio) == keep


@pytest.mark.parametrize("ratio", [1.0, -0.1, 0.99])
def test_num_visible_rejects_ratios_that_keep_nothing(ratio):
    with pytest.raises(ValueError):
        num_visible(16, ratio)


@pytest.mark.parametrize(("length", "ratio"), [(16, 0.75), (64, 0.75), (10, 0.9), (10, 0.25)])
def test_random_masking_keeps_round_count_and_restores(length, ratio):
    x = torch.randn(3, length, 5, device=DEVICE)
    keep = num_visible(length, ratio)
    visible, mask, ids_restore = random_masking(x, ratio, generator=torch.Generator(DEVICE).manual_seed(0))
    assert visible.shape == (3, keep, 5)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), float(length - keep)))
    # ids_restore is a permutation whose inverse is the shuffle; the visible tokens are its first `keep`.
    ids_shuffle = ids_restore.argsort(dim=1)
    shuffled = unshuffle(x, ids_shuffle)
    assert torch.equal(shuffled[:, :keep], visible)
    assert torch.equal(unshuffle(shuffled, ids_restore), x)
    assert torch.equal(mask.bool(), ids_restore >= keep)
    for b in range(3):  # the visible tokens are exactly the unmasked ones (as sets: their orders differ)
        unmasked = x[b][~mask[b].bool()]
        assert torch.equal(visible[b, :, 0].sort().values, unmasked[:, 0].sort().values)


def test_random_masking_differs_per_sample():
    x = torch.randn(8, 16, 4, device=DEVICE)
    _, mask, _ = random_masking(x, 0.75, generator=torch.Generator(DEVICE).manual_seed(0))
    assert len({tuple(m.tolist()) for m in mask}) > 1


def test_ratio_zero_masked_path_equals_full_path():
    vit, x = small_vit(), images()
    with torch.no_grad():
        latent, mask, ids_restore = vit.forward_encoder(x, 0.0, generator=torch.Generator(DEVICE).manual_seed(3))
        full = vit.forward_features(x)
    assert latent.shape == full.shape == (2, 17, 32)
    assert not mask.any()
    assert not torch.equal(ids_restore, torch.arange(16).expand(2, -1))  # really shuffled
    torch.testing.assert_close(latent[:, 0], full[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unshuffle(latent[:, 1:], ids_restore), full[:, 1:], atol=1e-5, rtol=1e-5)


def test_masked_encoder_sees_only_visible_tokens():
    vit, x = small_vit(), images()
    latent, mask, _ = vit.forward_encoder(x, 0.75)
    assert latent.shape == (2, 1 + 4, 32)
    assert mask.shape == (2, 16)
    # Changing a masked patch's pixels must not change the latent.
    generator = torch.Generator(DEVICE)
    latent_a, mask_a, _ = vit.forward_encoder(x, 0.75, generator=generator.manual_seed(5))
    masked = int(mask_a[0].nonzero()[0])
    row, col = divmod(masked, 4)
    y = x.clone()
    y[0, :, row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8] += 10.0
    latent_b, _, _ = vit.forward_encoder(y, 0.75, generator=generator.manual_seed(5))
    torch.testing.assert_close(latent_a, latent_b)


def test_forward_features_shape_and_final_norm():
    vit, x = small_vit(), images(batch=3)
    with torch.no_grad():
        out = vit.forward_features(x)
    assert out.shape == (3, 17, 32)
    # Final LayerNorm with unit weight and zero bias at init: every token has zero mean and unit variance.
    torch.testing.assert_close(out.mean(dim=-1), torch.zeros(3, 17), atol=1e-5, rtol=0)


def test_get_intermediate_layers():
    vit, x = small_vit(depth=3), images()
    with torch.no_grad():
        full = vit.forward_features(x)
        last = vit.get_intermediate_layers(x, 1)
        picked = vit.get_intermediate_layers(x, [0, -1])
        raw = vit.get_intermediate_layers(x, [2], norm=False)
        two = vit.get_intermediate_layers(x, 2)
    assert len(last) == 1 and last[0].shape == (2, 16, 32)
    torch.testing.assert_close(last[0], full[:, 1:])
    assert len(picked) == 2
    torch.testing.assert_close(picked[1], full[:, 1:])
    assert not torch.allclose(picked[0], picked[1])
    torch.testing.assert_close(vit.norm(raw[0]), full[:, 1:])
    torch.testing.assert_close(two[0], vit.get_intermediate_layers(x, [1])[0])


@pytest.mark.parametrize("indices", [0, 4, [3], [-4], []])
def test_get_intermediate_layers_rejects_bad_indices(indices):
    with pytest.raises(ValueError):
        small_vit(depth=3).get_intermediate_layers(images(), indices)


def test_fused_attention_is_used():
    # A later benchmark compares against an eager reference: the default must be timm's fused SDPA path.
    assert all(block.attn.fused_attn for block in small_vit().blocks)


def test_decoder_places_tokens_by_ids_restore():
    # At ratio 0 the decoder gets every token, shuffled; after unshuffling it must compute exactly what it
    # computes on the tokens in patch order with the identity permutation.
    vit, x = small_vit(), images()
    torch.manual_seed(0)
    decoder = MaskedDecoder(grid_size=4, in_dim=32, width=16, depth=1, heads=2, out_dim=7).to(DEVICE).eval()
    with torch.no_grad():
        latent, _, ids_restore = vit.forward_encoder(x, 0.0, generator=torch.Generator(DEVICE).manual_seed(3))
        shuffled = decoder(latent, ids_restore)
        ordered = decoder(vit.forward_features(x), torch.arange(16, device=DEVICE).expand(2, -1))
    assert shuffled.shape == (2, 16, 7)
    torch.testing.assert_close(shuffled, ordered, atol=1e-5, rtol=1e-5)


def test_decoder_fills_masked_positions_with_the_mask_token():
    torch.manual_seed(0)
    decoder = MaskedDecoder(grid_size=4, in_dim=32, width=16, depth=1, heads=2, out_dim=7).to(DEVICE).eval()
    ids_restore = torch.randperm(16, device=DEVICE).unsqueeze(0)
    masked_latent = torch.randn(1, 1 + 4, 32, device=DEVICE)  # 12 of 16 positions need the mask token
    full_latent = torch.randn(1, 1 + 16, 32, device=DEVICE)  # none do
    with torch.no_grad():
        before = decoder(masked_latent, ids_restore), decoder(full_latent, ids_restore)
        # Not a constant shift: a pre-norm transformer with a final norm cannot see one.
        decoder.mask_token.add_(torch.randn(16, device=DEVICE))
        after = decoder(masked_latent, ids_restore), decoder(full_latent, ids_restore)
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(before[1], after[1])


def test_decoder_without_embed_needs_equal_widths():
    with pytest.raises(ValueError, match="in_dim == width"):
        MaskedDecoder(grid_size=4, in_dim=32, width=16, depth=1, heads=2, out_dim=7, embed=False)
    decoder = MaskedDecoder(grid_size=4, in_dim=32, width=32, depth=1, heads=2, out_dim=32, embed=False)
    assert isinstance(decoder.embed, torch.nn.Identity)


def test_encoder_knows_where_each_patch_is():
    # Swapping two patches of the image must not merely swap their output tokens: positions are encoded.
    vit, x = small_vit(), images()
    y = x.clone()
    y[:, :, :8, :8], y[:, :, :8, 8:16] = x[:, :, :8, 8:16], x[:, :, :8, :8]  # patches 0 and 1
    with torch.no_grad():
        out_x, out_y = vit.forward_features(x), vit.forward_features(y)
    swapped = out_y[:, [2, 1] + list(range(3, 17))]
    assert not torch.allclose(out_x[:, 1:], swapped, atol=1e-3)
    torch.testing.assert_close(vit.embed_patches(x) - vit.patch_embed(x), vit.pos_embed[:, 1:].expand(2, -1, -1))
