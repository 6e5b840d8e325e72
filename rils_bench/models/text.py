"""The text tower: open_clip's CLIP text transformer and its BPE tokenizer.

The tower is open_clip's `TextTransformer` unchanged (causal mask, final LayerNorm, the embedding at the EOT token
times `text_projection`), so its state dict has open_clip's key names and its numbers are open_clip's.
"""

from __future__ import annotations

import torch
from open_clip.tokenizer import tokenize as _open_clip_tokenize
from open_clip.transformer import QuickGELU, TextTransformer

VOCAB_SIZE = 49408  # open_clip's BPE vocabulary; the EOT token (49407) is the largest id, which pooling relies on


def build_text_tower(
    *,
    embed_dim: int,
    context_length: int,
    width: int,
    heads: int,
    layers: int,
    vocab_size: int = VOCAB_SIZE,
    quick_gelu: bool = False,
) -> TextTransformer:
    """A CLIP text transformer mapping `[B, context_length]` token ids to `[B, embed_dim]` (not normalised).

    Pooling is open_clip's 'argmax': the token with the largest id, i.e. EOT with open_clip's tokenizer.
    Weights get open_clip's own initialisation. `quick_gelu`: OpenAI CLIP's `x * sigmoid(1.702 x)` activation
    (the RILS authors' text tower), instead of GELU.
    """
    return TextTransformer(
        context_length=context_length,
        vocab_size=vocab_size,
        width=width,
        heads=heads,
        layers=layers,
        output_dim=embed_dim,
        act_layer=QuickGELU if quick_gelu else torch.nn.GELU,
    )


def tokenize(texts: str | list[str], context_length: int) -> torch.Tensor:
    """BPE-tokenize with open_clip's tokenizer: `[N, context_length]` int64, SOT ... EOT, zero padded.

    Longer texts are truncated and their last kept token replaced by EOT, so every row has exactly one EOT.
    """
    return _open_clip_tokenize(texts, context_length=context_length)
