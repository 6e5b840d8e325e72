"""`PretrainModel`: any pre-training method as an mmengine `BaseModel`."""

from __future__ import annotations

from typing import Any

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from rils_bench.methods import build_method
from rils_bench.models.text import tokenize


@MODELS.register_module()
class PretrainModel(BaseModel):
    """Wraps a method (`rils`, `clip`, `mae`, `mae_clip`) for mmengine's loops.

    Args:
        method: method name.
        arch: registry name of the model size, or a full model config dict.
        method_cfg: keyword arguments of the method (e.g. `mask_ratio`, `detach_prototypes`).
        data_preprocessor: mmengine data preprocessor config (normalisation happens there).

    mmengine sums every logged value whose key contains "loss"; the method's total is `loss` and its terms are
    logged without that word (`itc`, `mim`), so the total is not counted twice.
    """

    def __init__(
        self,
        method: str,
        arch: str | dict[str, Any],
        method_cfg: dict[str, Any] | None = None,
        data_preprocessor: dict[str, Any] | None = None,
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.method_name = method
        # The rank and world size are fixed for a run; the launcher has set up the process group by now.
        self.method = build_method(method, arch, rank=get_rank(), world_size=get_world_size(), **(method_cfg or {}))

    @property
    def encoder(self) -> torch.nn.Module:
        return self.method.encoder

    def forward(
        self, inputs: torch.Tensor, data_samples: list[str] | torch.Tensor | None = None, mode: str = "loss"
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
            tokens = tokenize(list(data_samples), self.encoder.config["context_length"]).to(inputs.device)
        out = self.method(inputs, tokens)
        return {("loss" if k == "loss" else k.removeprefix("loss_")): v for k, v in out.items()}
