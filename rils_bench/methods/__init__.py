"""Pre-training methods: each is a plain `nn.Module` whose `forward(images, text_tokens)` returns named losses.

Every method returns a dict with `loss` (the total to back-propagate), its terms (`loss_itc` where there is a
contrastive loss, `loss_mim` where there is a masked one) and detached logs (`retrieval_acc`, `logit_scale` for
the image-text methods). Each keeps what survives pre-training in its `encoder` attribute (an
`ImageTextEncoder`, with its model config in `encoder.config`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from rils_bench.errors import UserError
from rils_bench.methods.clip import CLIP
from rils_bench.methods.losses import ITCLoss, LanguageSpaceMIMLoss, contrastive_labels, gather_features
from rils_bench.methods.mae import MAE
from rils_bench.methods.mae_clip import MAECLIP
from rils_bench.methods.rils import RILS
from rils_bench.methods.semmim import SemMIM

METHODS: dict[str, type[nn.Module]] = {
    "rils": RILS,
    "clip": CLIP,
    "mae": MAE,
    "mae_clip": MAECLIP,
    "semmim": SemMIM,
}


def build_method(method: str, model: str | dict[str, Any], **kwargs: Any) -> nn.Module:
    """Build a method by name (`rils`, `clip`, `mae`, `mae_clip`, `semmim`) on a registry name or saved model config.

    `kwargs` go to the method's constructor (e.g. `mask_ratio`, `rank`, `world_size`).
    """
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return METHODS[method](model, **kwargs)


__all__ = [
    "CLIP",
    "ITCLoss",
    "LanguageSpaceMIMLoss",
    "MAE",
    "MAECLIP",
    "METHODS",
    "RILS",
    "SemMIM",
    "build_method",
    "contrastive_labels",
    "gather_features",
]
