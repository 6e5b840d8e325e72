"""`PretrainModel`: any pre-training method as an mmengine `BaseModel`."""

from __future__ import annotations

from typing import Any

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from rils_bench.methods import build_method
from rils_bench.models.registry import resolve_config

# uint8 `[B, 3, H, W]` batches -> float, normalised with CLIP's RGB statistics: the ones every evaluation uses
# (`rils_bench.eval.features.eval_transform`), taken from open_clip so they are written nowhere else.
CLIP_PREPROCESSOR = {
    "type": "mmengine.ImgDataPreprocessor",
    "mean": [255 * m for m in OPENAI_DATASET_MEAN],
    "std": [255 * s for s in OPENAI_DATASET_STD],
}


@MODELS.register_module()
class PretrainModel(BaseModel):
    """Wraps a method (`rils`, `clip`, `mae`, `mae_clip`) for mmengine's loops.

    Args:
        method: method name.
        arch: registry name of the model size, or a full model config dict.
        method_cfg: keyword arguments of the method (e.g. `mask_ratio`, `detach_prototypes`).
        text: model-config keys that choose the text tower, applied over `arch` (e.g. `text_tower='hf'`,
            `hf_model='minilm'`; see `rils_bench.models.registry`); None keeps the size's own CLIP tower.
        img_size: input side in pixels, applied over `arch`'s (the position embedding follows the patch grid);
            None keeps the size's own. The study sets it from its `image_size`, so model and data always agree.
        data_preprocessor: mmengine data preprocessor config (normalisation happens there); default
            `CLIP_PREPROCESSOR`.

    mmengine sums every logged value whose key contains "loss"; the method's total is `loss` and its terms are
    logged without that word (`itc`, `mim`), so the total is not counted twice.
    """

    def __init__(
        self,
        method: str,
        arch: str | dict[str, Any],
        method_cfg: dict[str, Any] | None = None,
        text: dict[str, Any] | None = None,
        img_size: int | None = None,
        data_preprocessor: dict[str, Any] | None = None,
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(CLIP_PREPROCESSOR), init_cfg=init_cfg)
        self.method_name = method
        # The rank and world size are fixed for a run; the launcher has set up the process group by now.
        self.rank, self.world_size = get_rank(), get_world_size()
        overrides = {**(text or {}), **({"img_size": int(img_size)} if img_size else {})}
        if overrides:
            arch = {**resolve_config(arch), **overrides}
        self.method = build_method(method, arch, rank=self.rank, world_size=self.world_size, **(method_cfg or {}))
        # Masks come from a per-step seed over the *global* batch (see `mask_noise`). Both numbers are buffers, so
        # they are saved in mmengine's checkpoints and a resumed run draws the masks an uninterrupted one would.
        # The base seed is drawn after mmengine has seeded every rank identically.
        self.register_buffer("mask_seed", torch.randint(2**31 - 1, ()), persistent=True)
        self.register_buffer("step", torch.zeros((), dtype=torch.long), persistent=True)

    @property
    def encoder(self) -> torch.nn.Module:
        return self.method.encoder

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: list[str] | torch.Tensor | None = None,
        mode: str = "loss",
        skipped: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor] | torch.Tensor:
        """`mode='loss'`: the method's step on normalised images `[B, 3, H, W]` and their captions (strings, or
        tokens `[B, T]`); `mode='tensor'`: the encoder's final-normed tokens `[B, 1+L, D]`."""
        if mode == "tensor":
            return self.encoder.forward_features(inputs)
        if mode != "loss":
            raise ValueError(f"PretrainModel supports mode 'loss' and 'tensor', not {mode!r}")
        tokens = data_samples
        if self.encoder.text is None:  # image-only methods (MAE) never read captions
            tokens = None
        elif isinstance(data_samples, (list, tuple)):
            tokens = self.encoder.tokenize(data_samples).to(inputs.device)
        out = self.method(inputs, tokens, mask_noise=self.mask_noise(len(inputs), inputs.device))
        self.step += 1
        return {("loss" if k == "loss" else k.removeprefix("loss_")): v for k, v in out.items()}

    def mask_noise(self, local_batch: int, device: torch.device) -> torch.Tensor:
        """Shuffle noise `[B_local, L]` for this step: this rank's rows of noise drawn for the whole global batch.

        So the masks of a sample depend only on (seed, step, its place in the global batch): N ranks of B samples
        mask exactly as one process of N*B does, and a resumed run as an uninterrupted one.
        """
        generator = torch.Generator().manual_seed(int(self.mask_seed) * 1_000_003 + int(self.step))
        num_patches = self.encoder.visual.num_patches
        noise = torch.rand(self.world_size * local_batch, num_patches, generator=generator)  # [N*B, L]
        return noise[self.rank * local_batch : (self.rank + 1) * local_batch].to(device)
