"""CLIP baseline on the same encoder: whole images, mean-pooled patch tokens, image-text contrastive loss only."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rils_bench.methods.losses import ITCLoss
from rils_bench.models.registry import ImageTextEncoder, resolve_config
from rils_bench.precision import float32_region


class CLIP(nn.Module):
    """CLIP pre-training: `forward(images, text_tokens)` returns `loss` (= `loss_itc`) and detached logs.

    Args:
        model: a registry name or a saved model config with a text tower (`embed_dim` set).
        rank, world_size: this process's place in data-parallel training (embeddings are gathered).

    Attributes:
        encoder: the `ImageTextEncoder` kept after pre-training.
    """

    def __init__(self, model: str | dict[str, Any], *, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        config = resolve_config(model)
        if config["embed_dim"] is None:
            raise ValueError("CLIP needs a text tower: the model config has embed_dim=None")
        self.encoder = ImageTextEncoder(config)
        self.itc_loss = ITCLoss(rank=rank, world_size=world_size)

    @float32_region  # losses, temperatures and normalisations in fp32 under autocast (rils_bench.precision)
    def forward_loss(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """ITC of normalised `[B, E]` embeddings, plus `retrieval_acc` and `logit_scale` logs."""
        logit_scale = self.encoder.get_logit_scale()
        itc = self.itc_loss(image_emb, text_emb, logit_scale)
        return {
            "loss": itc["loss_itc"],
            "loss_itc": itc["loss_itc"],
            "retrieval_acc": itc["retrieval_hit"].mean(),
            "logit_scale": logit_scale.detach(),
        }

    def forward(
        self, images: torch.Tensor, text_tokens: torch.Tensor, *, mask_noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One CLIP step on unmasked images; `mask_noise` is accepted for a uniform interface and ignored."""
        image_emb = self.encoder.encode_image(images, normalize=True)  # [B, E]
        text_emb = self.encoder.encode_text(text_tokens, normalize=True)  # [B, E]
        return self.forward_loss(image_emb, text_emb)
