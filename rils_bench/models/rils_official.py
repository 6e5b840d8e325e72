"""The RILS authors' checkpoint layout (github.com/hustvl/RILS, built on SLIP): mapped onto our `ImageTextEncoder`.

Their model is one module (`RILS(CLIP)`): `visual` is an MAE-style ViT whose attention has separate `q_bias` /
`v_bias` (no key bias, BEiT's convention) plus the pre-training decoder (`visual.decoder_*`, `visual.mask_token`);
`image_projection` is a `[width, embed]` matrix applied as `x @ P` to the mean of the patch tokens (as ours);
the text tower is OpenAI CLIP's (`token_embedding`, `positional_embedding`, `transformer.resblocks.*`, `ln_final`,
`text_projection`, QuickGELU) with `logit_scale`. SLIP-style training checkpoints wrap it as
`{"state_dict": {"module." + key: ...}, "args": Namespace(...), ...}`.

The map: `qkv.bias = [q_bias, 0, v_bias]` (identical attention), `image_projection.weight = P.T`, text keys under
`text.` unchanged (open_clip's text transformer has OpenAI's names), the decoder left out; the sizes are read off
the tensors (heads = width / 64, CLIP's and timm's convention).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from rils_bench.checkpoint import CheckpointError, read_tensor_file, unwrap_state_dict

_DECODER = ("visual.decoder_", "visual.mask_token")
_TEXT = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def is_official_layout(state: dict[str, Any]) -> bool:
    return "image_projection" in state and any(k.startswith("visual.blocks.") and k.endswith("q_bias") for k in state)


def read_official(path: Path) -> dict[str, torch.Tensor]:
    """The model tensors of an authors' checkpoint: `state_dict` unwrapped, `module.` stripped.

    SLIP-style checkpoints also pickle the run's `argparse.Namespace`; it is allowed in the weights-only reader
    (a Namespace holds plain values; building one runs no code), nothing else is.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        payload = read_tensor_file(path, expected="a RILS checkpoint")
    state = unwrap_state_dict(payload)
    if state is None or not is_official_layout(state):
        raise CheckpointError(f"{path}: not the RILS authors' layout (no image_projection or visual q_bias/v_bias)")
    return state


def to_encoder_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`(our ImageTextEncoder state dict, the model-config overrides of its sizes)` of an authors' state dict."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(_DECODER) or key.endswith(("attn.q_bias", "attn.v_bias")):
            continue
        if key.startswith("visual."):
            out[key] = value
        elif key.startswith(_TEXT):
            out[f"text.{key}"] = value
        elif key == "image_projection":
            out["image_projection.weight"] = value.T.contiguous()
        elif key == "logit_scale":
            out[key] = value
    for key in [k for k in state if k.endswith("attn.q_bias")]:
        q, v = state[key], state[key.removesuffix("q_bias") + "v_bias"]
        out[key.removesuffix("q_bias") + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out, _sizes(out)


def _sizes(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    proj = state["visual.patch_embed.proj.weight"]  # [D, C, P, P]
    width, patch = proj.shape[0], proj.shape[-1]
    grid = math.isqrt(state["visual.pos_embed"].shape[1] - 1)
    text_width = state["text.ln_final.weight"].shape[0]
    return {
        "img_size": grid * patch,
        "patch_size": patch,
        "in_chans": proj.shape[1],
        "width": width,
        "depth": len({k.split(".")[2] for k in state if k.startswith("visual.blocks.")}),
        "heads": max(1, width // 64),
        "mlp_ratio": state["visual.blocks.0.mlp.fc1.weight"].shape[0] / width,
        "embed_dim": state["image_projection.weight"].shape[0],
        "context_length": state["text.positional_embedding"].shape[0],
        "vocab_size": state["text.token_embedding.weight"].shape[0],
        "text_width": text_width,
        "text_heads": max(1, text_width // 64),
        "text_layers": len({k.split(".")[3] for k in state if k.startswith("text.transformer.resblocks.")}),
        "text_quick_gelu": True,
    }
