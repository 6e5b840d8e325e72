"""MAE baseline (He et al., 2022) on the same encoder: reconstruct the pixels of masked patches.

The target is per-patch normalised pixels (MAE's `norm_pix_loss`); the decoder is MAE's (8 blocks x 512 wide
for ImageNet-sized models, smaller for the tiny sizes; see the registry's `decoder_*` keys).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rils_bench.models.registry import ImageTextEncoder, resolve_config
from rils_bench.models.vit import MaskedDecoder
from rils_bench.precision import float32_region


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into flattened patches in raster order. `[B, C, H, W] -> [B, L, p*p*C]`, pixels (row, col, c)."""
    batch, chans, height, width = images.shape
    h, w = height // patch_size, width // patch_size
    x = images.reshape(batch, chans, h, patch_size, w, patch_size)
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, h, w, p, p, C]
    return x.reshape(batch, h * w, patch_size * patch_size * chans)


def pixel_reconstruction_loss(
    images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch_size: int, *, norm_pix: bool = True
) -> torch.Tensor:
    """Mean squared error on masked patches only.

    Args:
        images: `[B, C, H, W]`.
        pred: `[B, L, p*p*C]` predicted patches.
        mask: `[B, L]`, 1 on masked patches.
        patch_size: side `p` of a patch.
        norm_pix: normalise each target patch by its own mean and (unbiased) variance, as MAE does.
    """
    target = patchify(images, patch_size)  # [B, L, p*p*C]
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # [B, L]
    return (per_patch * mask).sum() / mask.sum()


def build_pixel_decoder(config: dict[str, Any], *, grid_size: int) -> MaskedDecoder:
    """MAE's pixel decoder for a model config (`decoder_width/depth/heads`)."""
    return MaskedDecoder(
        grid_size=grid_size,
        in_dim=config["width"],
        width=config["decoder_width"],
        depth=config["decoder_depth"],
        heads=config["decoder_heads"],
        out_dim=config["patch_size"] ** 2 * config["in_chans"],
        mlp_ratio=config["mlp_ratio"],
    )


class MAE(nn.Module):
    """MAE pre-training: `forward(images)` returns `loss` (= `loss_mim`, pixel MSE on masked patches).

    The encoder is built image-only (`embed_dim=None`: no projection, no text tower), and its saved config says so.

    Args:
        model: a registry name or a saved model config.
        mask_ratio: fraction of patches hidden from the encoder.
        norm_pix: per-patch normalised pixel targets.
        rank, world_size: accepted so that every method is built alike; MAE's loss is per sample and never gathers.
    """

    def __init__(
        self,
        model: str | dict[str, Any],
        *,
        mask_ratio: float = 0.75,
        norm_pix: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        del rank, world_size
        config = {**resolve_config(model), "embed_dim": None}
        self.encoder = ImageTextEncoder(config)
        self.decoder = build_pixel_decoder(config, grid_size=self.encoder.visual.grid_size)
        self.patch_size = config["patch_size"]
        self.mask_ratio = mask_ratio
        self.norm_pix = norm_pix

    def forward_encoder(
        self, images: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked pass: `(latent [B, 1+K, D], mask [B, L], ids_restore [B, L])`."""
        return self.encoder.visual.forward_encoder(images, self.mask_ratio, noise=noise)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of every patch. `[B, 1+K, D] -> [B, L, p*p*C]`."""
        return self.decoder(latent, ids_restore)

    @float32_region  # losses, temperatures and normalisations in fp32 under autocast (rils_bench.precision)
    def forward_loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pixel loss on masked patches."""
        loss = pixel_reconstruction_loss(images, pred, mask, self.patch_size, norm_pix=self.norm_pix)
        return {"loss": loss, "loss_mim": loss}

    def forward(
        self, images: torch.Tensor, text_tokens: torch.Tensor | None = None, *, mask_noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One MAE step; `text_tokens` is accepted for a uniform interface and ignored."""
        latent, mask, ids_restore = self.forward_encoder(images, mask_noise)  # [B, 1+K, D]
        pred = self.forward_decoder(latent, ids_restore)  # [B, L, p*p*C]
        return self.forward_loss(images, pred, mask)
