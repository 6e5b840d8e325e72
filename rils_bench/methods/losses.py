"""Loss modules shared by the image-text methods: contrastive ITC and RILS's masked KL in language space.

Each module returns a dict of named terms. Cross-rank gathering is a separate function with `rank` and
`world_size` passed in; with `world_size=1` nothing is gathered and no process group is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import gather_features as _open_clip_gather
from torch import nn

from rils_bench.precision import float32_region


def gather_features(
    image_emb: torch.Tensor, text_emb: torch.Tensor, *, rank: int, world_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ranks' embeddings, concatenated in rank order. `[B, E] -> [world_size * B, E]` each.

    Gathered *with* gradient (open_clip's `gather_with_grad=True`): the gradient of this rank's loss reaches the
    other ranks' embeddings too. Each rank's loss is the mean over its own rows, and data-parallel training
    averages the ranks' gradients, so N ranks of B samples give exactly the gradient of one process with N*B
    samples. (A plain all_gather, whose foreign slices carry no gradient, would drop the cross-rank terms and
    change the gradient with the number of ranks.) `world_size=1` returns the inputs unchanged.
    """
    if world_size == 1:
        return image_emb, text_emb
    return _open_clip_gather(
        image_emb, text_emb, local_loss=True, gather_with_grad=True, rank=rank, world_size=world_size
    )


def global_sum(x: torch.Tensor, *, world_size: int) -> torch.Tensor:
    """Sum of a (detached) tensor over all ranks; `x` itself when `world_size=1`."""
    if world_size == 1:
        return x
    total = x.detach().clone()
    torch.distributed.all_reduce(total)
    return total


def contrastive_labels(batch_size: int, *, rank: int, device: torch.device) -> torch.Tensor:
    """Index of each local sample's partner in the gathered batch: `rank * B + arange(B)`."""
    return rank * batch_size + torch.arange(batch_size, device=device)


class ITCLoss(nn.Module):
    """CLIP's symmetric image-text contrastive loss of the local batch against the global one.

    `L = 1/2 [CE(s v_local z_all^T, labels) + CE(s z_local v_all^T, labels)]` with `labels = rank * B + arange(B)`.

    Args:
        rank: this process's rank.
        world_size: number of processes; 1 means no gathering.
    """

    def __init__(self, *, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.rank = rank
        self.world_size = world_size

    @float32_region  # logits of nearly equal cosines times up to 100: bf16's 8-bit mantissa would blur them
    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> dict:
        """Contrastive loss of L2-normalised local embeddings.

        Args:
            image_emb: `[B, E]` normalised image embeddings `v` of this rank.
            text_emb: `[B, E]` normalised text embeddings `z` of this rank, pair `i` matching image `i`.
            logit_scale: the multiplier `s` (already exponentiated and clamped).

        Returns:
            `loss_itc` (scalar); `retrieval_hit` `[B]` float 0/1 without gradient: 1 where the image's highest
            logit is its own caption among all ranks' captions; `all_text_emb` `[N, E]`, the gathered `z_all`
            (for RILS's prototypes).
        """
        all_image, all_text = gather_features(image_emb, text_emb, rank=self.rank, world_size=self.world_size)
        labels = contrastive_labels(image_emb.shape[0], rank=self.rank, device=image_emb.device)
        logits_per_image = logit_scale * image_emb @ all_text.T  # [B, N]
        logits_per_text = logit_scale * text_emb @ all_image.T  # [B, N]
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
        hit = (logits_per_image.detach().argmax(dim=-1) == labels).to(image_emb.dtype)
        return {"loss_itc": loss, "retrieval_hit": hit, "all_text_emb": all_text}


class LanguageSpaceMIMLoss(nn.Module):
    """RILS's masked reconstruction loss: match the text-prototype distributions of masked patches.

    Patch features are classified against the batch's text embeddings ("prototypes"). The teacher is the
    unmasked pass, `p = softmax(f^ z_all^T / teacher_temp)`, detached; the student is the decoder's prediction,
    `q = softmax(g^ z_all^T / student_temp)`; `f^`, `g^` are L2-normalised. The loss is `KL(p || q)` averaged
    over the masked patches of images whose caption was retrieved (`keep`):
    `sum(m * c * KL) / (sum(m * c) + 1e-6)`; it is 0 when no image qualifies. With several ranks, the numerator
    is this rank's and the denominator the global count (times `world_size`, which data-parallel averaging
    divides out), so the average over ranks is exactly the one-process loss of the global batch.

    Args:
        teacher_temp: temperature of the (sharper) teacher distribution, 0.04 in the paper.
        student_temp: temperature of the student distribution, 0.1 in the paper.
        detach_prototypes: pass no gradient into the text prototypes. True (default) is the reference's
            multi-GPU behaviour: its prototypes come from a plain all_gather and carry no gradient, so the text
            tower learns from L_ITC only. False is the reference's single-GPU behaviour (the text tower also
            learns from L_MIM); our prototypes are gathered with gradient, so with False too 1-rank and N-rank
            runs give the same gradients.
        world_size: number of data-parallel ranks (for the global normaliser).
    """

    def __init__(
        self,
        *,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        detach_prototypes: bool = True,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.teacher_temp = teacher_temp
        self.student_temp = student_temp
        self.detach_prototypes = detach_prototypes
        self.world_size = world_size

    @float32_region  # softmax at temperature 0.04: logits up to 25, where bf16 steps by 0.125
    def forward(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        prototypes: torch.Tensor,
        mask: torch.Tensor,
        keep: torch.Tensor,
    ) -> dict:
        """Masked KL between teacher and student prototype distributions.

        Args:
            student: `[B, L, E]` projected decoder predictions (normalised here).
            teacher: `[B, L, E]` projected tokens of the unmasked pass (normalised and detached here).
            prototypes: `[N, E]` normalised text embeddings of the global batch.
            mask: `[B, L]`, 1 on masked patches.
            keep: `[B]`, 1 for images whose caption was retrieved (`retrieval_hit` of `ITCLoss`).

        Returns:
            `loss_mim` (scalar).
        """
        if self.detach_prototypes:
            prototypes = prototypes.detach()
        with torch.no_grad():
            log_p = F.log_softmax(F.normalize(teacher, dim=-1) @ prototypes.T / self.teacher_temp, dim=-1)  # [B, L, N]
        log_q = F.log_softmax(F.normalize(student, dim=-1) @ prototypes.T / self.student_temp, dim=-1)  # [B, L, N]
        kl = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=-1)  # [B, L]
        weight = mask * keep.unsqueeze(1)  # [B, L]
        count = global_sum(weight.sum(), world_size=self.world_size)
        return {"loss_mim": self.world_size * (kl * weight).sum() / (count + 1e-6)}


class PrototypeDistillationLoss(nn.Module):
    """Cross-entropy between a momentum teacher's and a student's distributions over K learnable prototypes, with
    DINO's centering and sharpening of the teacher (Caron et al. 2021; iBOT uses one per token type).

    `p = softmax((t - c) / teacher_temp)` (no gradient), `log q = log_softmax(s / student_temp)`,
    `L = mean_n( -sum_k p_nk log q_nk )`. The center `c` is a running mean of the teacher logits,
    `c <- m c + (1 - m) mean_n(t_n)` over the *global* batch, updated after the loss is computed (so every rank
    uses the same center in a step); it is a buffer, saved with the model and restored on resume.

    Args:
        prototypes: K, the size of the encoding space.
        teacher_temp: temperature of the teacher softmax (sharpening; < student_temp).
        student_temp: temperature of the student softmax.
        center_momentum: m of the center's running mean.
        world_size: number of data-parallel ranks (the center's mean is global).
    """

    def __init__(
        self,
        prototypes: int,
        *,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.teacher_temp = teacher_temp
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.world_size = world_size
        self.register_buffer("center", torch.zeros(prototypes))

    def teacher_probs(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Centered, sharpened teacher distribution `[N, K]` (rows sum to 1)."""
        return F.softmax((teacher_logits.detach() - self.center) / self.teacher_temp, dim=-1)

    @float32_region  # softmax at temperature 0.04 over K prototypes: fp32 (rils_bench.precision)
    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of `[N, K]` student logits against the teacher's distribution of `[N, K]` logits."""
        targets = self.teacher_probs(teacher_logits)
        loss = -(targets * F.log_softmax(student_logits / self.student_temp, dim=-1)).sum(dim=-1).mean()
        self.update_center(teacher_logits)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        count = global_sum(teacher_logits.new_tensor(float(len(teacher_logits))), world_size=self.world_size)
        mean = global_sum(teacher_logits.detach().sum(dim=0), world_size=self.world_size) / count
        self.center.mul_(self.center_momentum).add_(mean, alpha=1 - self.center_momentum)
