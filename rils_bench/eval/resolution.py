"""`--image-size N`: run an encoder at another input side than its own, the patch size kept.

Absolute position embeddings are resampled to the new patch grid (timm's `resample_abs_pos_embed`, bicubic): timm
models through their own `set_input_size`, rils-bench encoders through `VisionTransformer.set_input_size`. The
pixels floor simply resizes to N. The chosen side lands in `encoder.config["img_size"]`, which the evaluation
transform and the feature cache key read, and in the record.
"""

from __future__ import annotations

from typing import Any

from rils_bench.errors import UserError


def patch_size_of(encoder: Any) -> int:
    """The encoder's patch side in pixels (a pixels floor has none: 1)."""
    if hasattr(encoder, "visual") and hasattr(encoder.visual, "patch_embed"):
        return int(encoder.visual.patch_embed.patch_size[0])
    model = getattr(encoder, "model", None)
    if model is not None and hasattr(model, "patch_embed"):
        return int(model.patch_embed.patch_size[0])
    if model is not None and hasattr(getattr(model, "visual", None), "patch_size"):  # open_clip
        return int(model.visual.patch_size[0])
    return 1


def at_input_size(encoder: Any, size: int | None) -> Any:
    """`encoder`, set to run at `size` px (None: its own size). Returns the same object.

    Raises:
        UserError: a size that is not a positive multiple of the patch size, or an encoder whose size cannot change.
    """
    own = int(encoder.config["img_size"])
    if size is None or size == own:
        return encoder
    patch = patch_size_of(encoder)
    if size < 1 or size % patch:
        raise UserError(f"--image-size {size}: not a positive multiple of the encoder's patch size ({patch} px)")
    if hasattr(encoder, "visual") and hasattr(encoder.visual, "set_input_size"):
        encoder.visual.set_input_size(size)
    elif hasattr(getattr(encoder, "model", None), "set_input_size"):  # timm
        encoder.model.set_input_size(img_size=size)
    elif encoder.config.get("name", "").startswith("pixels"):
        pass  # the transform's resize is the whole encoder
    else:
        raise UserError(f"--image-size {size}: {encoder.config.get('name')} runs only at its own size ({own} px)")
    encoder.config["img_size"] = size
    return encoder
