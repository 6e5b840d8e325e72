"""The image encoder: a ViT of timm blocks with a fixed 2-D sin-cos position embedding and MAE-style masking.

One module serves every method: `forward_encoder` runs only the visible tokens of a randomly masked image
(MAE, RILS, MAE+CLIP), `forward_features` runs the whole image (CLIP, the RILS teacher pass, evaluation).
Parameter names follow timm's `VisionTransformer` (`patch_embed`, `cls_token`, `pos_embed`, `blocks`, `norm`), so
the encoder's state dict maps onto timm's model without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from timm.models.vision_transformer import Block, PatchEmbed
from torch import nn

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


def sincos_2d_pos_embed(dim: int, grid_size: int, *, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding of a square `grid_size` x `grid_size` patch grid.

    Returns `[grid_size**2 (+1), dim]`, rows in raster order (row-major, as `PatchEmbed` flattens). The first half
    of the channels encodes the column, the second half the row (MAE's layout); within each half, sines then
    cosines over `dim // 4` frequencies `1 / 10000**(k / (dim // 4))`. With `cls_token` a zero row comes first.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # [D/4]
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # [G, G] each

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega  # [G*G, D/4]
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # [G*G, D/2]

    embed = torch.cat([encode(cols), encode(rows)], dim=1).float()  # [G*G, D]
    if cls_token:
        embed = torch.cat([embed.new_zeros(1, dim), embed], dim=0)  # [1+G*G, D]
    return embed


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """How many of `num_patches` tokens a mask ratio keeps: `round(L * (1 - r))`, halves rounded up.

    Rounding (not MAE's `int()`, which floors) keeps e.g. `L=10, r=0.9` at 1 token although `10 * (1 - 0.9)` is
    0.99999... in floating point. A ratio that would keep no token at all is an error.
    """
    keep = int(num_patches * (1.0 - mask_ratio) + 0.5)
    if not 0.0 <= mask_ratio < 1.0 or keep < 1:
        raise ValueError(f"mask_ratio {mask_ratio} must be in [0, 1) and keep at least one of {num_patches} tokens")
    return keep


def random_masking(
    x: torch.Tensor, mask_ratio: float, *, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by shuffling: keep the first `num_visible(L, r)` tokens of a random permutation.

    Args:
        x: `[B, L, D]` patch tokens (position embedding already added, so order no longer matters).
        mask_ratio: fraction of tokens removed, in [0, 1).
        generator: optional RNG for the shuffle noise (on `x.device`); the global RNG otherwise.
        noise: optional `[B, L]` shuffle noise to use instead of drawing it. Pre-training draws it for the whole
            global batch from a per-step seed, so masks do not depend on how the batch is split across ranks or
            on whether the run was resumed.

    Returns:
        `(x_visible [B, K, D], mask [B, L], ids_restore [B, L])` with `K = num_visible(L, mask_ratio)`;
        `mask` is 1.0 on removed tokens, 0.0 on kept ones, in the original patch order; `ids_restore` inverts the
        shuffle: `unshuffle(cat([x_visible, removed]), ids_restore)` is `x` again.
    """
    batch, length, _ = x.shape
    keep = num_visible(length, mask_ratio)
    if noise is None:
        noise = torch.rand(batch, length, device=x.device, generator=generator)  # [B, L]
    ids_shuffle = noise.argsort(dim=1)  # small noise is kept
    ids_restore = ids_shuffle.argsort(dim=1)  # [B, L]
    x_visible = unshuffle(x, ids_shuffle[:, :keep])  # [B, K, D]
    mask = torch.ones(batch, length, device=x.device, dtype=x.dtype)
    mask[:, :keep] = 0
    mask = mask.gather(1, ids_restore)  # back to patch order
    return x_visible, mask, ids_restore


def unshuffle(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Pick tokens along dim 1: `out[b, i] = x[b, ids[b, i]]`. `[B, N, D], [B, M] -> [B, M, D]`."""
    return x.gather(1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def init_mae_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears (as the JAX ViT), zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VisionTransformer(nn.Module):
    """ViT encoder (pre-norm timm `Block`s, LayerNorm eps 1e-6, cls token, fixed sin-cos positions, final norm).

    The position embedding is a persistent buffer, not a parameter: it is saved and converted like timm's
    `pos_embed` but never trained. Attention is timm's default (fused SDPA where available).
    """

    def __init__(
        self, *, img_size: int, patch_size: int, in_chans: int, width: int, depth: int, heads: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, width)
        self.num_patches = self.patch_embed.num_patches
        self.grid_size = self.patch_embed.grid_size[0]
        self.width = width
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", sincos_2d_pos_embed(width, self.grid_size).unsqueeze(0))  # [1, 1+L, D]
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm) for _ in range(depth)
        )
        self.norm = LayerNorm(width)
        self._init_weights()

    def _init_weights(self) -> None:
        init_mae_weights(self)
        # The patch projection is a linear map of the flattened patch, so it is initialised as one (MAE).
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)

    def set_input_size(self, img_size: int) -> None:
        """Run at `img_size` from now on: the position embedding is resampled to the new patch grid the way timm
        resamples a checkpoint's (bicubic, `resample_abs_pos_embed`), the cls position kept; the patch size stays."""
        from timm.layers import resample_abs_pos_embed

        patch = self.patch_embed.patch_size[0]
        if img_size % patch:
            raise ValueError(f"input size {img_size} is not a multiple of the patch size {patch}")
        grid = img_size // patch
        if grid == self.grid_size:
            return
        self.pos_embed = resample_abs_pos_embed(self.pos_embed, new_size=[grid, grid], num_prefix_tokens=1)
        self.patch_embed.set_input_size(img_size=img_size)
        self.num_patches, self.grid_size = self.patch_embed.num_patches, grid

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with their positions, no cls token. `[B, C, H, W] -> [B, L, D]`."""
        return self.patch_embed(images) + self.pos_embed[:, 1:]

    def _prepend_cls(self, x: torch.Tensor) -> torch.Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)  # [B, 1+N, D]

    def forward_encoder(
        self,
        images: torch.Tensor,
        mask_ratio: float,
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode only the visible tokens of a randomly masked image.

        Returns:
            `(latent [B, 1+K, D], mask [B, L], ids_restore [B, L])`: final-normed cls + visible tokens in shuffled
            order, and the mask and inverse permutation of `random_masking`.
        """
        x = self.embed_patches(images)  # [B, L, D]
        x, mask, ids_restore = random_masking(x, mask_ratio, generator=generator, noise=noise)  # [B, K, D]
        x = self._prepend_cls(x)  # [B, 1+K, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Final-normed tokens of the whole image, cls first. `[B, C, H, W] -> [B, 1+L, D]`."""
        x = self._prepend_cls(self.embed_patches(images))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def get_intermediate_layers(
        self, images: torch.Tensor, indices: int | Sequence[int] = 1, *, norm: bool = True
    ) -> list[torch.Tensor]:
        """Patch tokens after chosen blocks (DINOv2's interface), in block order.

        Args:
            images: `[B, C, H, W]`.
            indices: an int `n` takes the last `n` blocks; a sequence names blocks (0-based, negatives count from
                the end).
            norm: apply the final norm to each output (DINOv2's default), as `forward_features` does.

        Returns:
            One `[B, L, D]` tensor (cls removed) per selected block, ordered by depth.
        """
        take = self._block_indices(indices)
        x = self._prepend_cls(self.embed_patches(images))
        outputs = []
        for i, block in enumerate(self.blocks[: max(take) + 1]):
            x = block(x)
            if i in take:
                outputs.append((self.norm(x) if norm else x)[:, 1:])
        return outputs

    def _block_indices(self, indices: int | Sequence[int]) -> set[int]:
        depth = len(self.blocks)
        if isinstance(indices, int):
            if not 1 <= indices <= depth:
                raise ValueError(f"asked for the last {indices} blocks of a {depth}-block encoder")
            return set(range(depth - indices, depth))
        if not indices or any(not -depth <= i < depth for i in indices):
            raise ValueError(f"block indices {list(indices)} out of range for a {depth}-block encoder")
        return {i % depth for i in indices}


class MaskedDecoder(nn.Module):
    """Decoder of a masked encoder: mask tokens fill the removed positions, then a few blocks predict every patch.

    Args:
        grid_size: side of the patch grid (`L = grid_size**2`).
        in_dim: width of the encoder latent.
        width, depth, heads: the decoder transformer.
        out_dim: size of each patch prediction (pixels for MAE, encoder features for RILS).
        embed: project the latent to `width` first (MAE); RILS feeds the latent as is (`in_dim == width`).
    """

    def __init__(
        self,
        *,
        grid_size: int,
        in_dim: int,
        width: int,
        depth: int,
        heads: int,
        out_dim: int,
        mlp_ratio: float = 4.0,
        embed: bool = True,
    ) -> None:
        super().__init__()
        if not embed and in_dim != width:
            raise ValueError(f"a decoder without input projection needs in_dim == width, got {in_dim} != {width}")
        self.embed = nn.Linear(in_dim, width) if embed else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", sincos_2d_pos_embed(width, grid_size).unsqueeze(0))  # [1, 1+L, W]
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm) for _ in range(depth)
        )
        self.norm = LayerNorm(width)
        self.pred = nn.Linear(width, out_dim)
        init_mae_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict all patches from the visible ones. `[B, 1+K, D], [B, L] -> [B, L, out_dim]` (cls dropped)."""
        return self.predict(self.fill(latent, ids_restore))

    def fill(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Mask tokens in the removed positions, patch order restored, positions added. `-> [B, 1+L, W]`."""
        x = self.embed(latent)  # [B, 1+K, W]
        batch, length = ids_restore.shape
        mask_tokens = self.mask_token.expand(batch, length + 1 - x.shape[1], -1)  # [B, L-K, W]
        patches = unshuffle(torch.cat([x[:, 1:], mask_tokens], dim=1), ids_restore)  # [B, L, W], patch order
        return torch.cat([x[:, :1], patches], dim=1) + self.pos_embed  # [B, 1+L, W]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder blocks and the prediction layer over filled tokens. `[B, 1+L, W] -> [B, L, out_dim]`."""
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]  # [B, L, out_dim]
