"""`pixels[:<size>]`: the resized, normalised image itself as the feature vector, a floor beside `random:<arch>`.

Whether a pre-trained encoder beats raw pixels at a given scale is itself a finding (a logistic regression on the
28 px MNIST-like sets is strong), so the study reports both floors. The "encoder" goes through the same evaluation
interface as every other one: `forward_features` returns a dummy cls token and the flattened image as the only
"patch" token, so the probes' `gap` feature is the image, `[B, 3 * size * size]`. Image-only: no zero-shot, no
retrieval, no dense backbone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

PIXELS_SPEC = "pixels"
DEFAULT_SIZE = 32  # 3,072 values: the 28 px sets kept nearly as they are, small enough for an L-BFGS linear probe


def parse_pixels_spec(spec: str) -> int | None:
    """The image side of a `pixels` / `pixels:<size>` spec, or None when `spec` is something else.

    Raises:
        ValueError: `pixels:` followed by anything but a positive integer.
    """
    if spec != PIXELS_SPEC and not spec.startswith(f"{PIXELS_SPEC}:"):
        return None
    size = spec.partition(":")[2] or str(DEFAULT_SIZE)
    if not size.isdigit() or int(size) < 1:
        raise ValueError(f"{spec!r}: expected pixels or pixels:<size> with a positive integer size")
    return int(size)


class PixelEncoder(nn.Module):
    """The identity "encoder": `[B, 3, S, S] -> [B, 2, 3*S*S]` (a zero cls token, then the flattened image)."""

    num_prefix_tokens = 1
    has_class_token = False  # the cls row is a placeholder: `--feature cls` is refused

    def __init__(self, size: int) -> None:
        super().__init__()
        # The evaluation transform reads `img_size` (resize + centre crop + CLIP's mean/std) like any encoder's.
        self.config: dict[str, Any] = {"name": f"pixels_{size}px", "img_size": size, "embed_dim": None}
        self.text: nn.Module | None = None  # image-only: zero-shot and retrieval refuse it like MAE

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1).unsqueeze(1)  # [B, 1, 3*S*S]
        return torch.cat([torch.zeros_like(flat), flat], dim=1)
