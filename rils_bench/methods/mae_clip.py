"""MAE + CLIP baseline: one masked pass serves both pixel reconstruction and the contrastive loss.

The image embedding is the mean of the *visible* patch tokens, projected; there is no second, unmasked pass.
This is the naive combination RILS is compared against.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rils_bench.methods.losses import ITCLoss
from rils_bench.methods.mae import build_pixel_decoder, pixel_reconstruction_loss
from rils_bench.models.registry import ImageTextEncoder, resolve_config
from rils_bench.precision import float32_region


class MAECLIP(nn.Module):
    """MAE + CLIP pre-training: `forward(images, text_tokens)` returns `loss`, `loss_itc`, `loss_mim` and logs.

    Args:
        model: a registry name or a saved model config with a text tower (`embed_dim` set).
        mask_ratio: fraction of patches hidden from the encoder.
        mim_weight: weight of the pixel loss in the total, `L = L_ITC + mim_weight * L_MIM`.
        norm_pix: per-patch normalised pixel targets.
        rank, world_size: this process's place in data-parallel training (embeddings are gathered).
    """

    def __init__(
        self,
        model: str | dict[str, Any],
        *,
        mask_ratio: float = 0.75,
        mim_weight: float = 1.0,
        norm_pix: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        config = resolve_config(model)
        if config["embed_dim"] is None:
            raise ValueError("MAE+CLIP needs a text tower: the model config has embed_dim=None")
        self.encoder = ImageTextEncoder(config)
        self.decoder = build_pixel_decoder(config, grid_size=self.encoder.visual.grid_size)
        self.patch_size = config["patch_size"]
        self.mask_ratio = mask_ratio
        self.mim_weight = mim_weight
        self.norm_pix = norm_pix
        self.itc_loss = ITCLoss(rank=rank, world_size=world_size)

    def forward_encoder(
        self, images: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked pass: `(latent [B, 1+K, D], mask [B, L], ids_restore [B, L])`."""
        return self.encoder.visual.forward_encoder(images, self.mask_ratio, noise=noise)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of every patch. `[B, 1+K, D] -> [B, L, p*p*C]`."""
        return self.decoder(latent, ids_restore)

    @float32_region  # losses, temperatures and normalisations in fp32 under autocast (rils_bench.precision)
    def forward_loss(
        self,
        images: torch.Tensor,
        latent: torch.Tensor,
        pred: torch.Tensor,
        mask: torch.Tensor,
        text_emb: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Pixel loss on masked patches plus ITC of the visible tokens' mean against normalised `text_emb`."""
        image_emb = F.normalize(self.encoder.project(latent[:, 1:].mean(dim=1)), dim=-1)  # [B, E]
        logit_scale = self.encoder.get_logit_scale()
        itc = self.itc_loss(image_emb, text_emb, logit_scale)
        loss_mim = pixel_reconstruction_loss(images, pred, mask, self.patch_size, norm_pix=self.norm_pix)
        return {
            "loss": itc["loss_itc"] + self.mim_weight * loss_mim,
            "loss_itc": itc["loss_itc"],
            "loss_mim": loss_mim,
            "retrieval_acc": itc["retrieval_hit"].mean(),
            "logit_scale": logit_scale.detach(),
        }

    def forward(
        self, images: torch.Tensor, text_tokens: torch.Tensor, *, mask_noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One MAE + CLIP step."""
        latent, mask, ids_restore = self.forward_encoder(images, mask_noise)  # [B, 1+K, D]
        pred = self.forward_decoder(latent, ids_restore)  # [B, L, p*p*C]
        text_emb = self.encoder.encode_text(text_tokens, normalize=True)  # [B, E]
        return self.forward_loss(images, latent, pred, mask, text_emb)
