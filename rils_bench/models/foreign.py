"""Checkpoints people already have: open_clip and timm models, wrapped in the encoder interface evaluations use.

The source library builds its own model (`open_clip.create_model`, `timm.create_model` with no pretrained tag:
nothing is fetched) and the file's weights are loaded into it strictly, read weights-only. The wrappers below
expose what every evaluation calls on an `ImageTextEncoder`: `config` (`img_size`, `embed_dim`, the
normalisation the authors trained with, the feature their authors probe), `forward_features` (final-normed
tokens, prefix tokens first), `num_prefix_tokens` / `has_class_token`, `get_intermediate_layers`,
`encode_image`, and for image-text models `tokenize` / `encode_text`.

Specs (`--ckpt`): `open_clip:<model name>=<file>` (e.g. `open_clip:ViT-B-16=/ckpts/open_clip_model.safetensors`)
and `timm:<model name>=<file>` (e.g. `timm:vit_small_patch14_reg4_dinov2=/ckpts/dinov2.pth`). A file is a
`.safetensors` file or a tensor-only `torch.save` (optionally under `state_dict` / `model` / `module.`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rils_bench.checkpoint import CheckpointError, load_strict, read_tensor_file, unwrap_state_dict

FOREIGN_SOURCES = ("open_clip", "timm")


def parse_foreign_spec(spec: str) -> tuple[str, str, Path] | None:
    """`(source, model name, file)` of an `open_clip:` / `timm:` spec; None for any other spec.

    Raises:
        CheckpointError: a foreign spec without `=<file>`, or whose file does not exist.
    """
    source, sep, rest = spec.partition(":")
    if not sep or source not in FOREIGN_SOURCES:
        return None
    name, eq, file = rest.partition("=")
    if not eq or not name or not file:
        raise CheckpointError(
            f"{spec!r}: write {source}:<model name>=<weights file>; no hub is reachable, so the weights must come "
            "from a local file"
        )
    path = Path(file).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{spec!r}: weights file {path} not found")
    return source, name, path


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a tensor-only torch file, unwrapped from `state_dict` / `model` and a
    `module.` prefix (DDP training checkpoints)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    payload = unwrap_state_dict(read_tensor_file(path, expected="a tensor-only state dict"))
    if not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return payload


def load_foreign(spec: str, source: str, name: str, path: Path) -> nn.Module:
    """Build `name` in its source library and load `path` into it (strict keys); returns the wrapper, eval mode."""
    weights = read_weights(path)
    if source == "open_clip":
        return OpenCLIPEncoder.from_weights(name, weights, spec)
    return TimmEncoder.from_weights(name, weights, spec)


class TimmEncoder(nn.Module):
    """A timm ViT (any variant timm builds: register tokens, layer scale, `norm_pre`, `fc_norm`, no class token).

    Image-only. `default_feature` follows how the model family is evaluated by its authors: the class token for
    DINOv2 / DeiT / CLIP-style models (timm `global_pool='token'`), the mean of the patch tokens for MAE and for
    models that pool by averaging.
    """

    text = None

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model = model
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 1))
        self.has_class_token = getattr(model, "cls_token", None) is not None
        cfg = model.pretrained_cfg
        pooled_by_average = getattr(model, "global_pool", "token") == "avg" or ".mae" in name or "_mae" in name
        self.config = {
            "name": f"timm:{name}",
            "img_size": int(model.patch_embed.img_size[0]),
            "width": int(model.embed_dim),
            "embed_dim": None,
            "image_mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
            "image_std": list(cfg.get("std", (0.229, 0.224, 0.225))),
            "default_feature": "gap" if pooled_by_average or not self.has_class_token else "cls",
        }

    @classmethod
    def from_weights(cls, name: str, weights: dict[str, torch.Tensor], spec: str) -> TimmEncoder:
        import timm

        try:
            model = timm.create_model(name, pretrained=False, num_classes=0)
        except RuntimeError as err:  # timm: "Unknown model (...)"
            raise CheckpointError(f"{spec!r}: {err}") from None
        weights = {k: v for k, v in weights.items() if not k.startswith(("head.", "head_drop."))}
        load_strict(model, weights, source=spec, target=f"timm:{name}")
        return cls(model, name).eval()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """timm's `forward_features`: final-normed tokens, prefix (class, register) tokens first."""
        return self.model.forward_features(images)

    def get_intermediate_layers(
        self, images: torch.Tensor, indices: int | Sequence[int] = 1, *, norm: bool = True
    ) -> list[torch.Tensor]:
        """Patch tokens `[B, L, D]` after the chosen blocks (timm's own `get_intermediate_layers`)."""
        return list(self.model.get_intermediate_layers(images, n=indices, norm=norm))

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """The pooled feature of the model's own head (`forward_head(pre_logits=True)`); image-only."""
        pooled = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        return F.normalize(pooled, dim=-1) if normalize else pooled


class OpenCLIPEncoder(nn.Module):
    """An open_clip CLIP model with a ViT image tower: zero-shot and retrieval go through its own towers and
    tokenizer; probes default to its projected image embedding (CLIP's own linear-probe feature)."""

    num_prefix_tokens = 1
    has_class_token = True

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        import open_clip

        self.model = model
        visual = model.visual
        size = visual.image_size
        preprocess = getattr(visual, "preprocess_cfg", {}) or {}
        self.config = {
            "name": f"open_clip:{name}",
            "img_size": int(size[0] if isinstance(size, Sequence) else size),
            "width": int(visual.transformer.width),
            "embed_dim": int(visual.output_dim),
            "context_length": int(model.context_length),
            "image_mean": list(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
            "image_std": list(preprocess.get("std", open_clip.OPENAI_DATASET_STD)),
            "default_feature": "embed",
        }
        self._tokenizer = open_clip.get_tokenizer(name)

    @classmethod
    def from_weights(cls, name: str, weights: dict[str, torch.Tensor], spec: str) -> OpenCLIPEncoder:
        import open_clip
        from open_clip.transformer import VisionTransformer

        if name not in open_clip.list_models():
            raise CheckpointError(f"{spec!r}: open_clip has no model {name!r} (see open_clip.list_models())")
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # "No pretrained weights loaded": we load them next
        try:
            model = open_clip.create_model(name, pretrained=None)
        finally:
            logging.getLogger().setLevel(quiet)
        if not isinstance(model.visual, VisionTransformer):
            raise CheckpointError(f"{spec!r}: only open_clip models with a ViT image tower are supported")
        load_strict(model, weights, source=spec, target=f"open_clip:{name}")
        return cls(model, name).eval()

    @property
    def text(self) -> nn.Module:
        return self.model.transformer

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens after the last block and `ln_post` (the tokens open_clip pools), class token first."""
        out = self.model.visual.forward_intermediates(
            images, indices=1, normalize_intermediates=True, output_fmt="NLC", output_extra_tokens=True,
            intermediates_only=True,
        )  # fmt: skip
        return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)

    def get_intermediate_layers(
        self, images: torch.Tensor, indices: int | Sequence[int] = 1, *, norm: bool = True
    ) -> list[torch.Tensor]:
        out = self.model.visual.forward_intermediates(
            images, indices=indices, normalize_intermediates=norm, output_fmt="NLC", intermediates_only=True
        )
        return list(out["image_intermediates"])

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.model.encode_image(images, normalize=normalize)

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        return self._tokenizer([texts] if isinstance(texts, str) else list(texts))

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.model.encode_text(tokens, normalize=normalize)
