"""Named model sizes, the image-text encoder they build, and `create_model`.

A model config is one flat dict of primitives (ints, floats, str, None), saved inside checkpoints; it loads with
`torch.load(weights_only=True)` and `create_model(**config)` rebuilds the same architecture from it. Keys:

- `name`: the registered entrypoint the config came from.
- image encoder: `img_size`, `patch_size`, `in_chans`, `width`, `depth`, `heads`, `mlp_ratio`.
- joint space: `embed_dim` (an int), or None for an image-only encoder (MAE): no projection, no text tower.
- text tower: `text_tower` selects it. `"clip"` (default, the paper's setting): open_clip's CLIP text transformer
  trained from scratch, `context_length`, `vocab_size`, `text_width`, `text_heads`, `text_layers`, `text_quick_gelu`
  (OpenAI CLIP's activation; the RILS authors' checkpoints). `"hf"`: a
  pre-trained Hugging Face sentence encoder (`rils_bench.models.hf_text`): `hf_model` (a built-in name such as
  `minilm`, or a local folder), `hf_pooler`, `text_lock` / `text_unlocked_layers` (LiT-style freezing),
  `hf_weights_sha256` (filled in when first built, checked on every rebuild), `context_length`; the CLIP tower's
  keys are ignored.
- MAE pixel decoder (built by the `mae` and `mae_clip` methods, ignored here): `decoder_width`, `decoder_depth`,
  `decoder_heads`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rils_bench.models.hf_text import HFTextTower
from rils_bench.models.text import VOCAB_SIZE, build_text_tower, tokenize
from rils_bench.models.vit import VisionTransformer

_MODELS: dict[str, Callable[[], dict[str, Any]]] = {}

_DEFAULTS: dict[str, Any] = {
    "in_chans": 3,
    "mlp_ratio": 4.0,
    "vocab_size": VOCAB_SIZE,
    "text_tower": "clip",
    "hf_model": None,
    "hf_pooler": "mean_pooler",
    "text_lock": True,
    "text_unlocked_layers": 0,
    "hf_weights_sha256": None,
    "text_quick_gelu": False,
    # Image-encoder variants of foreign ViTs, for the dense backbone (`rils_bench.adapters.backbone.RILSViT`): our
    # own encoder is always the default and refuses anything else.
    "layer_scale": False,
    "reg_tokens": 0,
    "no_embed_class": False,
    "pre_norm": False,
    "norm_eps": 1e-6,
    "act": "gelu",
}
BACKBONE_VARIANT_KEYS = ("layer_scale", "reg_tokens", "no_embed_class", "pre_norm", "norm_eps", "act")
TEXT_TOWERS = ("clip", "hf")
CONFIG_KEYS = frozenset(
    {"name", "img_size", "patch_size", "width", "depth", "heads", "embed_dim", "context_length", "text_width"}
    | {"text_heads", "text_layers", "decoder_width", "decoder_depth", "decoder_heads"}
    | set(_DEFAULTS)
)

LOGIT_SCALE_INIT = math.log(1 / 0.07)  # CLIP's initial temperature 0.07
LOGIT_SCALE_MAX = math.log(100.0)  # CLIP caps the scale at 100


class ImageTextEncoder(nn.Module):
    """Everything that is kept after pre-training: image encoder, image projection, text tower, logit scale.

    The four evaluation functions below are the only ones downstream code (probes, zero-shot, retrieval, the
    mmdet/mmseg backbones) may call.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        variants = {k: config[k] for k in BACKBONE_VARIANT_KEYS if config[k] != _DEFAULTS[k]}
        if variants:
            raise ValueError(f"the rils-bench encoder has no {variants}: only the dense backbone builds those")
        self.visual = VisionTransformer(
            **{k: config[k] for k in ("img_size", "patch_size", "in_chans", "width", "depth", "heads", "mlp_ratio")}
        )
        self.embed_dim = config["embed_dim"]
        self.image_projection: nn.Linear | None = None
        self.text: nn.Module | None = None
        if self.embed_dim is not None:
            self.image_projection = nn.Linear(config["width"], self.embed_dim, bias=False)
            nn.init.normal_(self.image_projection.weight, std=config["width"] ** -0.5)  # open_clip's visual proj
            self.text = _build_text(config)
            if isinstance(self.text, HFTextTower):
                self.config["hf_weights_sha256"] = self.text.weights_sha256
            self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Final-normed tokens of the whole image, cls first. `[B, C, H, W] -> [B, 1+L, D]`."""
        return self.visual.forward_features(images)

    def get_intermediate_layers(
        self, images: torch.Tensor, indices: int | Sequence[int] = 1, *, norm: bool = True
    ) -> list[torch.Tensor]:
        """Patch tokens `[B, L, D]` after the chosen blocks; see `VisionTransformer.get_intermediate_layers`."""
        return self.visual.get_intermediate_layers(images, indices, norm=norm)

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Mean of the final-normed patch tokens (cls excluded), projected. `[B, C, H, W] -> [B, E]`.

        An image-only encoder (`embed_dim=None`) returns the pooled tokens unprojected, `[B, D]`.
        """
        pooled = self.forward_features(images)[:, 1:].mean(dim=1)  # [B, D]
        embedding = self.project(pooled)
        # Normalised in fp32 under autocast too: the contrastive losses compare unit vectors (rils_bench.precision).
        return F.normalize(embedding.float(), dim=-1) if normalize else embedding

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids of the text tower's own tokenizer: `[N, context_length]` int64."""
        self._require_text()
        if isinstance(self.text, HFTextTower):
            return self.text.tokenize(texts)
        return tokenize(texts if isinstance(texts, str) else list(texts), self.config["context_length"])

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text embedding (CLIP tower: at the EOT token; HF tower: pooled), projected. `[B, context_length]` ids
        from `tokenize` -> `[B, E]`."""
        self._require_text()
        if tokens.shape[-1] != self.config["context_length"]:
            # open_clip's causal mask has a fixed size; a shorter input fails deep inside attention otherwise.
            raise ValueError(f"text tokens have length {tokens.shape[-1]}, expected {self.text.context_length}")
        embedding = self.text(tokens)
        return F.normalize(embedding.float(), dim=-1) if normalize else embedding

    def _require_text(self) -> None:
        if self.text is None:
            raise RuntimeError(f"{self.config['name']} was built image-only (embed_dim=None): it has no text tower")

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Map encoder features into the joint space. `[..., D] -> [..., E]`; identity when image-only."""
        return x if self.image_projection is None else self.image_projection(x)

    def get_logit_scale(self) -> torch.Tensor:
        """`exp(logit_scale)` with the log clamped to at most ln(100); the clamp passes no gradient beyond it."""
        return self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()


def _build_text(config: dict[str, Any]) -> nn.Module:
    """The text tower the config selects (`text_tower`)."""
    if config["text_tower"] == "hf":
        if not config["hf_model"]:
            raise ValueError("text_tower='hf' needs hf_model (a built-in name such as 'minilm', or a local folder)")
        return HFTextTower(
            config["hf_model"],
            embed_dim=config["embed_dim"],
            context_length=config["context_length"],
            pooler=config["hf_pooler"],
            lock=config["text_lock"],
            unlocked_layers=config["text_unlocked_layers"],
            weights_sha256=config["hf_weights_sha256"],
        )
    if config["text_tower"] != "clip":
        raise ValueError(f"unknown text_tower {config['text_tower']!r}; known: {', '.join(TEXT_TOWERS)}")
    return build_text_tower(
        embed_dim=config["embed_dim"],
        context_length=config["context_length"],
        width=config["text_width"],
        heads=config["text_heads"],
        layers=config["text_layers"],
        vocab_size=config["vocab_size"],
        quick_gelu=config["text_quick_gelu"],
    )


def register_model(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Register a size under its function's name; the function returns the size's config (without `name`)."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return sorted(fnmatch.filter(_MODELS, pattern))


def get_model_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The full config of a registered size, with `overrides` applied. Unknown names or keys raise."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    unknown = set(overrides) - CONFIG_KEYS
    if unknown:
        raise TypeError(f"unknown model config keys {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}")
    config = {"name": name, **_DEFAULTS, **_MODELS[name](), **overrides}
    missing = CONFIG_KEYS - set(config)
    if missing:
        raise ValueError(f"model {name!r} does not define {sorted(missing)}")
    return config


def create_model(name: str, **overrides: Any) -> ImageTextEncoder:
    """Build a registered size. `create_model(**model.config)` rebuilds the same architecture."""
    return ImageTextEncoder(get_model_config(name, **overrides))


def resolve_config(model: str | dict[str, Any]) -> dict[str, Any]:
    """A registry name or a saved config (e.g. from a checkpoint) -> a validated, complete config."""
    if isinstance(model, str):
        return get_model_config(model)
    config = dict(model)
    return get_model_config(config.pop("name"), **config)


# Sizes. Text towers follow CLIP/SLIP; the MAE decoder is MAE's 8 x 512 for ImageNet-sized models.
_MAE_DECODER = {"decoder_width": 512, "decoder_depth": 8, "decoder_heads": 16}
_CLIP_TEXT = {"context_length": 77, "text_width": 512, "text_heads": 8, "text_layers": 12, "embed_dim": 512}


@register_model
def rils_vit_test_patch8() -> dict[str, Any]:
    """Minute model for unit tests: 32 px, 4 x 4 patches, width 32, 2 blocks; 2-layer text tower."""
    return dict(
        img_size=32, patch_size=8, width=32, depth=2, heads=2, embed_dim=32,
        context_length=16, text_width=32, text_heads=2, text_layers=2,
        decoder_width=32, decoder_depth=1, decoder_heads=2,
    )  # fmt: skip


@register_model
def rils_vit_tiny_patch8() -> dict[str, Any]:
    """ViT-Ti/8 on 64 px images (8 x 8 patches), a 6-layer 256-wide text tower of 32 tokens: CPU-trainable."""
    return dict(
        img_size=64, patch_size=8, width=192, depth=12, heads=3, embed_dim=256,
        context_length=32, text_width=256, text_heads=4, text_layers=6,
        decoder_width=128, decoder_depth=4, decoder_heads=4,
    )  # fmt: skip


@register_model
def rils_vit_small_patch16() -> dict[str, Any]:
    """ViT-S/16, 224 px, with CLIP's base text tower (SLIP's ViT-S setting)."""
    return dict(img_size=224, patch_size=16, width=384, depth=12, heads=6, **_CLIP_TEXT, **_MAE_DECODER)


@register_model
def rils_vit_base_patch16() -> dict[str, Any]:
    """ViT-B/16, 224 px: the paper's main model (text width 512, 8 heads, 12 layers, joint space 512)."""
    return dict(img_size=224, patch_size=16, width=768, depth=12, heads=12, **_CLIP_TEXT, **_MAE_DECODER)


@register_model
def rils_vit_large_patch16() -> dict[str, Any]:
    """ViT-L/16, 224 px, with CLIP ViT-L's text tower (width 768, 12 heads) and a 768-d joint space."""
    text = {**_CLIP_TEXT, "text_width": 768, "text_heads": 12, "embed_dim": 768}
    return dict(img_size=224, patch_size=16, width=1024, depth=24, heads=16, **text, **_MAE_DECODER)
