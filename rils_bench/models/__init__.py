"""Image encoder, text tower and the registry of model sizes.

Downstream code builds an encoder with `create_model(name, **overrides)` (or `create_model(**saved_config)`) and
calls only its evaluation interface: `forward_features`, `get_intermediate_layers`, `encode_image`, `encode_text`.
"""

from rils_bench.models.pretrained import PretrainedInfo, load_pretrained
from rils_bench.models.registry import (
    ImageTextEncoder,
    create_model,
    get_model_config,
    list_models,
    register_model,
    resolve_config,
)
from rils_bench.models.text import build_text_tower, tokenize
from rils_bench.models.vit import MaskedDecoder, VisionTransformer, random_masking, sincos_2d_pos_embed, unshuffle

__all__ = [
    "ImageTextEncoder",
    "MaskedDecoder",
    "PretrainedInfo",
    "VisionTransformer",
    "build_text_tower",
    "create_model",
    "get_model_config",
    "list_models",
    "load_pretrained",
    "random_masking",
    "register_model",
    "resolve_config",
    "sincos_2d_pos_embed",
    "tokenize",
    "unshuffle",
]
