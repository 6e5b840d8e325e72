"""RILS: masked visual reconstruction in language semantic space (Yang et al., CVPR 2023).

One step, as the paper reads:

1. `forward_encoder`: the encoder sees only the visible 25 % of the patches (MAE masking).
2. `forward_decoder`: one transformer block of the encoder's width fills in the masked patches and predicts
   their *encoder-space features* (`Linear(D -> D)`), not pixels.
3. `forward_target`: the same encoder (no EMA copy) encodes the whole image; its final-normed patch tokens are
   the reconstruction target and, mean-pooled and projected, the image embedding.
4. `forward_loss`: image-text contrastive loss, plus KL between the text-prototype distributions of target and
   prediction on the masked patches of images whose caption was retrieved; `L = L_ITC + 0.5 L_MIM`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rils_bench.methods.losses import ITCLoss, LanguageSpaceMIMLoss
from rils_bench.models.registry import ImageTextEncoder, resolve_config
from rils_bench.models.vit import MaskedDecoder
from rils_bench.precision import float32_region


class RILS(nn.Module):
    """RILS pre-training: `forward(images, text_tokens)` returns the named losses and logs of one step.

    Args:
        model: a registry name or a saved model config; it must have a text tower (`embed_dim` set).
        mask_ratio: fraction of patches hidden from the encoder.
        mim_weight: weight of the masked loss in the total.
        teacher_temp, student_temp: temperatures of the target and prediction distributions (0.04, 0.1).
        detach_prototypes: stop the masked loss's gradient at the text prototypes (default: the reference's
            multi-GPU behaviour). See `LanguageSpaceMIMLoss`.
        rank, world_size: this process's place in data-parallel training; the loss gathers text and image
            embeddings of all ranks.

    Attributes:
        encoder: the `ImageTextEncoder` kept after pre-training (export `encoder.state_dict()` and
            `encoder.config`); `decoder` is dropped.
    """

    def __init__(
        self,
        model: str | dict[str, Any],
        *,
        mask_ratio: float = 0.75,
        mim_weight: float = 0.5,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        detach_prototypes: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        config = resolve_config(model)
        if config["embed_dim"] is None:
            raise ValueError("RILS needs a text tower: the model config has embed_dim=None")
        self.encoder = ImageTextEncoder(config)
        width = config["width"]
        self.decoder = MaskedDecoder(
            grid_size=self.encoder.visual.grid_size,
            in_dim=width,
            width=width,
            depth=1,
            heads=config["heads"],
            out_dim=width,
            mlp_ratio=config["mlp_ratio"],
            embed=False,
        )
        self.mask_ratio = mask_ratio
        self.mim_weight = mim_weight
        self.itc_loss = ITCLoss(rank=rank, world_size=world_size)
        self.mim_loss = LanguageSpaceMIMLoss(
            teacher_temp=teacher_temp,
            student_temp=student_temp,
            detach_prototypes=detach_prototypes,
            world_size=world_size,
        )

    def forward_encoder(
        self, images: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked pass: `(latent [B, 1+K, D], mask [B, L], ids_restore [B, L])`."""
        return self.encoder.visual.forward_encoder(images, self.mask_ratio, noise=noise)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted encoder features of every patch. `[B, 1+K, D] -> [B, L, D]`."""
        return self.decoder(latent, ids_restore)

    def forward_target(self, images: torch.Tensor) -> torch.Tensor:
        """Second pass of the same encoder over the whole image: final-normed patch tokens `[B, L, D]`."""
        return self.encoder.forward_features(images)[:, 1:]

    @float32_region  # losses, temperatures and normalisations in fp32 under autocast (rils_bench.precision)
    def forward_loss(
        self, pred: torch.Tensor, target: torch.Tensor, text_emb: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Combine ITC and language-space MIM.

        Args:
            pred: `[B, L, D]` decoder predictions.
            target: `[B, L, D]` patch tokens of the unmasked pass.
            text_emb: `[B, E]` normalised text embeddings.
            mask: `[B, L]`, 1 on masked patches.
        """
        target_emb = self.encoder.project(target)  # [B, L, E]
        # The projection is linear, so pooling projected tokens equals projecting the pooled tokens.
        image_emb = F.normalize(target_emb.mean(dim=1), dim=-1)  # [B, E]
        logit_scale = self.encoder.get_logit_scale()
        itc = self.itc_loss(image_emb, text_emb, logit_scale)
        pred_emb = self.encoder.project(pred)  # [B, L, E]
        mim = self.mim_loss(pred_emb, target_emb, itc["all_text_emb"], mask, itc["retrieval_hit"])
        return {
            "loss": itc["loss_itc"] + self.mim_weight * mim["loss_mim"],
            "loss_itc": itc["loss_itc"],
            "loss_mim": mim["loss_mim"],
            "retrieval_acc": itc["retrieval_hit"].mean(),
            "logit_scale": logit_scale.detach(),
        }

    def forward(
        self, images: torch.Tensor, text_tokens: torch.Tensor, *, mask_noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One RILS step: `loss` (total), `loss_itc`, `loss_mim`, and the detached logs `retrieval_acc`
        (fraction of local images whose own caption scores highest) and `logit_scale`."""
        latent, mask, ids_restore = self.forward_encoder(images, mask_noise)  # [B, 1+K, D]
        pred = self.forward_decoder(latent, ids_restore)  # [B, L, D]
        target = self.forward_target(images)  # [B, L, D]
        text_emb = self.encoder.encode_text(text_tokens, normalize=True)  # [B, E]
        return self.forward_loss(pred, target, text_emb, mask)
