"""SemMIM: semantics-enhanced cross-modal masked image modeling (Liu et al., LREC-COLING 2024).

No code was published and the full text was not reachable offline; this follows the paper's abstract, and every
detail it leaves open is a named, switchable choice in the spirit of DINO / iBOT heads and ALBEF-style fusion:

1. *Local semantics enhancing.* A momentum (EMA) copy of the image encoder, projection, head and fusion block
   (mmengine's `ExponentialMovingAverage`, no gradient, not in the optimizer) encodes the whole image. Its global
   token and its patch tokens go through the *same* prototype head into a learnable K-dimensional space
   (`PrototypeHead`: MLP, L2-normalised bottleneck, cosine to K prototypes). The student's global token (of the
   masked view) learns the teacher's global distribution (`loss_global`, "agreement"); the student's predictions
   for the masked patches learn the teacher's patch distributions (`loss_mim`), so local targets live in the space
   the global agreement shapes. Teacher distributions are centered and sharpened (`PrototypeDistillationLoss`).
2. *Text-guided masking* (`text_guided_masking`): a patch's relevance is the cosine between the teacher's
   projected patch token and the caption embedding; the masked set is a Gumbel-top-k sample of
   `relevance / mask_temperature` (sampling without replacement, so the most relevant patches are masked most
   often, with randomness), always exactly `mask_ratio` of the patches. Off: MAE's uniform random masking.
3. *Text injection* (`text_injection`): a cross-attention block (`TextFusion`, image tokens attend to the caption's
   token features; identity at initialisation) fuses text into the decoder's tokens before it predicts; the
   teacher's EMA copy of the same block injects the caption into the patch tokens that become the targets.
4. *Image-text contrastive alignment*: CLIP's ITC on a second, unmasked student pass (as RILS does).

`L = L_ITC + global_weight * L_global + mim_weight * L_MIM`. The teacher is updated at the start of every forward
from the current student weights (equal to updating after each optimizer step; with gradient accumulation it
moves once per micro-batch). Only the CLIP text tower gives the per-token features the fusion needs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import ExponentialMovingAverage
from timm.layers import Mlp
from torch import nn

from rils_bench.methods.losses import ITCLoss, PrototypeDistillationLoss
from rils_bench.models.registry import ImageTextEncoder, resolve_config
from rils_bench.models.vit import LayerNorm, MaskedDecoder
from rils_bench.precision import float32_region


class PrototypeHead(nn.Module):
    """DINO-style head: `Mlp -> L2-normalised bottleneck -> cosine to K prototypes` (the weight-normalised last layer
    of DINO with its norm fixed at 1). `[..., D] -> [..., K]` logits in [-1, 1]."""

    def __init__(self, in_dim: int, *, prototypes: int, hidden: int, bottleneck: int) -> None:
        super().__init__()
        self.mlp = Mlp(in_dim, hidden, bottleneck)
        self.prototypes = nn.Parameter(torch.randn(prototypes, bottleneck) * bottleneck**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return prototype_cosines(self.mlp(x), self.prototypes)


@float32_region  # the logits are divided by temperatures down to 0.04: cosines in fp32 (rils_bench.precision)
def prototype_cosines(x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine of every row of `x` `[..., C]` with every prototype `[K, C]`. `-> [..., K]`."""
    return F.linear(F.normalize(x, dim=-1), F.normalize(prototypes, dim=-1))


class TextFusion(nn.Module):
    """Image tokens attend to caption tokens: `x + CrossAttn(LN(x), LN(text))`, then `x + Mlp(LN(x))` (an ALBEF
    fusion layer without its self-attention). Both residual branches start at zero, so the block is the identity at
    initialisation and text enters as it becomes useful."""

    def __init__(self, width: int, text_width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_image, self.norm_text, self.norm_mlp = LayerNorm(width), LayerNorm(text_width), LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, kdim=text_width, vdim=text_width, batch_first=True)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        nn.init.zeros_(self.mlp.fc2.weight)
        nn.init.zeros_(self.mlp.fc2.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """`[B, N, W]` image tokens, `[B, T, Wt]` text tokens, `[B, T]` True at padding -> `[B, N, W]`."""
        text = self.norm_text(text)
        x = x + self.attn(self.norm_image(x), text, text, key_padding_mask=padding, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


def gumbel_topk_noise(relevance: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    """Shuffle noise for `random_masking` (which keeps the smallest, masks the largest) that masks a Gumbel-top-k
    sample of `softmax(relevance / temperature)`: `relevance / temperature + Gumbel(uniform)`. `[B, L] -> [B, L]`."""
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-6, 1 - 1e-6)))
    return relevance / temperature + gumbel


class SemMIM(nn.Module):
    """SemMIM pre-training: `forward(images, text_tokens)` returns `loss`, `loss_itc`, `loss_global`, `loss_mim` and
    the logs `retrieval_acc`, `logit_scale`, `mask_relevance` (mean relevance of the masked minus the visible
    patches: > 0 when masking follows the text).

    Args:
        model: a registry name or saved model config with the CLIP text tower.
        mask_ratio: fraction of patches hidden from the student.
        text_guided_masking: mask text-relevant patches preferentially (else uniformly at random).
        mask_temperature: temperature of the relevance in the Gumbel-top-k sample (smaller: more greedy).
        text_injection: fuse caption tokens into the decoder and into the targets (else neither).
        prototypes, head_hidden, head_bottleneck: the K-dim encoding space and its head.
        teacher_temp, student_temp, center_momentum: `PrototypeDistillationLoss`'s.
        momentum: EMA momentum of the teacher, `teacher <- momentum * teacher + (1 - momentum) * student`.
        global_weight, mim_weight: weights of the agreement and the semantic MIM terms.
        rank, world_size: data-parallel place (ITC gathers embeddings, the centers average the global batch).
    """

    def __init__(
        self,
        model: str | dict[str, Any],
        *,
        mask_ratio: float = 0.75,
        text_guided_masking: bool = True,
        mask_temperature: float = 0.1,
        text_injection: bool = True,
        prototypes: int = 1024,
        head_hidden: int = 512,
        head_bottleneck: int = 128,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        momentum: float = 0.99,
        global_weight: float = 1.0,
        mim_weight: float = 1.0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        config = resolve_config(model)
        if config["embed_dim"] is None or config["text_tower"] != "clip":
            raise ValueError("SemMIM needs the CLIP text tower (its fusion attends to per-token text features)")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.encoder = ImageTextEncoder(config)
        width, heads = config["width"], config["heads"]
        self.decoder = MaskedDecoder(
            grid_size=self.encoder.visual.grid_size, in_dim=width, width=width, depth=1, heads=heads,
            out_dim=width, mlp_ratio=config["mlp_ratio"], embed=False,
        )  # fmt: skip
        self.fusion = TextFusion(width, config["text_width"], heads, config["mlp_ratio"]) if text_injection else None
        self.head = PrototypeHead(width, prototypes=prototypes, hidden=head_hidden, bottleneck=head_bottleneck)
        # mmengine's EMA: lerp(teacher, student, 1 - momentum) per update; a deep copy with requires_grad=False.
        self.teacher = ExponentialMovingAverage(self._student_parts(), momentum=1.0 - momentum)
        self.mask_ratio = mask_ratio
        self.text_guided_masking = text_guided_masking
        self.mask_temperature = mask_temperature
        self.global_weight, self.mim_weight = global_weight, mim_weight
        self.itc_loss = ITCLoss(rank=rank, world_size=world_size)
        common = dict(teacher_temp=teacher_temp, student_temp=student_temp, center_momentum=center_momentum)
        self.global_loss = PrototypeDistillationLoss(prototypes, **common, world_size=world_size)
        self.patch_loss = PrototypeDistillationLoss(prototypes, **common, world_size=world_size)

    def _student_parts(self) -> nn.ModuleDict:
        """The modules the teacher averages, under the names it keeps them (built afresh: not a registered child,
        so the student's weights are not saved twice)."""
        parts = {"visual": self.encoder.visual, "projection": self.encoder.image_projection, "head": self.head}
        return nn.ModuleDict({**parts, **({"fusion": self.fusion} if self.fusion is not None else {})})

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step towards the current student (the first call copies it)."""
        self.teacher.update_parameters(self._student_parts())

    def forward_text(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised caption embeddings `[B, E]`, the tower's token features `[B, T, Wt]` and the padding mask."""
        tower = self.encoder.text
        tower.output_tokens = True  # open_clip's TextTransformer then also returns its final-normed tokens
        try:
            pooled, token_features = tower(tokens)
        finally:
            tower.output_tokens = False
        return F.normalize(pooled.float(), dim=-1), token_features, tokens == 0  # open_clip pads with id 0

    @torch.no_grad()
    def forward_teacher(self, images: torch.Tensor) -> torch.Tensor:
        """The momentum encoder's final-normed tokens of the whole image `[B, 1+L, D]`."""
        return self.teacher.module["visual"].forward_features(images)

    @torch.no_grad()
    def masking_noise(self, relevance: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Shuffle noise `[B, L]` for `random_masking`: text-guided (Gumbel-top-k of `relevance`) or `uniform`."""
        if not self.text_guided_masking:
            return uniform
        return gumbel_topk_noise(relevance, uniform, self.mask_temperature)

    @torch.no_grad()
    def relevance(self, teacher_tokens: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Cosine of each teacher patch token, projected into the joint space, with its caption. `[B, L]`."""
        patches = F.normalize(self.teacher.module["projection"](teacher_tokens[:, 1:]).float(), dim=-1)
        return torch.einsum("ble,be->bl", patches, text_emb.detach())

    @torch.no_grad()
    def forward_targets(self, teacher_tokens: torch.Tensor, text: torch.Tensor, padding: torch.Tensor):
        """Teacher logits in the K-space: global `[B, K]` and per patch `[B, L, K]` (text-injected patches)."""
        teacher = self.teacher.module
        patches = teacher_tokens[:, 1:]
        if self.fusion is not None:
            patches = teacher["fusion"](patches, text.detach(), padding)
        return teacher["head"](teacher_tokens[:, 0]), teacher["head"](patches)

    def forward_decoder(self, latent, ids_restore, text: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Predicted features of every patch, with the caption fused in. `-> [B, L, D]`."""
        x = self.decoder.fill(latent, ids_restore)  # [B, 1+L, D]
        if self.fusion is not None:
            x = self.fusion(x, text, padding)
        return self.decoder.predict(x)

    @float32_region  # losses, temperatures and normalisations in fp32 under autocast (rils_bench.precision)
    def forward_loss(
        self,
        full: torch.Tensor,
        student_global: torch.Tensor,
        pred: torch.Tensor,
        mask: torch.Tensor,
        text_emb: torch.Tensor,
        teacher_global: torch.Tensor,
        teacher_patches: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """ITC of the unmasked pass, agreement of the masked view's global token, semantic MIM of masked patches.

        Args:
            full: `[B, 1+L, D]` student tokens of the whole image.
            student_global: `[B, D]` the masked pass's cls token.
            pred: `[B, L, D]` decoder predictions.
            mask: `[B, L]`, 1 on masked patches (the same count in every image).
            text_emb: `[B, E]` normalised caption embeddings.
            teacher_global, teacher_patches: teacher logits `[B, K]`, `[B, L, K]`.
        """
        image_emb = F.normalize(self.encoder.project(full[:, 1:].mean(dim=1)), dim=-1)  # [B, E]
        logit_scale = self.encoder.get_logit_scale()
        itc = self.itc_loss(image_emb, text_emb, logit_scale)
        loss_global = self.global_loss(self.head(student_global), teacher_global)
        masked = mask.bool()
        loss_mim = self.patch_loss(self.head(pred[masked]), teacher_patches[masked])  # [B*M, K]
        return {
            "loss": itc["loss_itc"] + self.global_weight * loss_global + self.mim_weight * loss_mim,
            "loss_itc": itc["loss_itc"],
            "loss_global": loss_global,
            "loss_mim": loss_mim,
            "retrieval_acc": itc["retrieval_hit"].mean(),
            "logit_scale": logit_scale.detach(),
        }

    def forward(
        self, images: torch.Tensor, text_tokens: torch.Tensor, *, mask_noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One SemMIM step (see the module docstring); `mask_noise` `[B, L]` uniform in (0, 1)."""
        self.update_teacher()
        teacher_tokens = self.forward_teacher(images)  # [B, 1+L, D]
        text_emb, text, padding = self.forward_text(text_tokens)  # [B, E], [B, T, Wt], [B, T]
        if mask_noise is None:
            mask_noise = torch.rand(images.shape[0], self.encoder.visual.num_patches, device=images.device)
        relevance = self.relevance(teacher_tokens, text_emb)  # [B, L], no gradient
        noise = self.masking_noise(relevance, mask_noise)
        latent, mask, ids_restore = self.encoder.visual.forward_encoder(images, self.mask_ratio, noise=noise)
        pred = self.forward_decoder(latent, ids_restore, text, padding)  # [B, L, D]
        full = self.encoder.forward_features(images)  # [B, 1+L, D]
        teacher_global, teacher_patches = self.forward_targets(teacher_tokens, text, padding)
        out = self.forward_loss(full, latent[:, 0], pred, mask, text_emb, teacher_global, teacher_patches)
        visible = 1 - mask
        out["mask_relevance"] = (relevance * mask).sum() / mask.sum() - (relevance * visible).sum() / visible.sum()
        return out
