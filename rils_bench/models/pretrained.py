"""`load_pretrained`: rebuild an encoder from what a user passes as `--ckpt`.

Accepted:
- an exported rils-bench checkpoint (`rils_bench.checkpoint`, written at the end of pre-training);
- `random:<arch>[@<px>]`: a randomly initialised encoder of a registered size (at input side `<px>` instead of the
  size's own, to match checkpoints pre-trained at another input size), the floor every method must beat;
- a timm ViT state dict (`torch.save(timm_vit.state_dict(), path)`, optionally under a `model` or `state_dict`
  key): image-only, its size inferred from the tensor shapes (heads = width / 64, timm's convention) unless `arch`
  names a registered size. MAE's released pre-training checkpoints (`{"model": encoder + decoder}`) are this
  layout too: the decoder and mask token are left out.
- `open_clip:<model>=<file>` / `timm:<model>=<file>`: a model of those libraries, built by the library itself
  (`rils_bench.models.foreign`): open_clip CLIP models with their text tower, any timm ViT variant.
- `rils-official:<file>`, or a tensor-only file in that layout: the RILS authors' checkpoints
  (`rils_bench.models.rils_official`), image and text tower.
- `pixels` / `pixels:<size>`: no encoder at all, the resized, normalised image as the feature
  (`rils_bench.models.pixels`), the floor beside `random:<arch>`.
- `reference:dinov2-s14`: a real pre-trained ViT-S/14 the suite ships (`rils_bench.models.reference`), the upper
  anchor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rils_bench.checkpoint import (
    ENCODER_PREFIX,
    FORMAT,
    CheckpointError,
    load_strict,
    read_tensor_file,
    strip_prefix,
    unwrap_state_dict,
)
from rils_bench.fileio import sha256_of
from rils_bench.models.foreign import load_foreign, parse_foreign_spec
from rils_bench.models.pixels import PixelEncoder, parse_pixels_spec
from rils_bench.models.reference import reference_as_timm_spec
from rils_bench.models.registry import ImageTextEncoder, get_model_config, list_models, resolve_config
from rils_bench.models.rils_official import is_official_layout, read_official, to_encoder_state

TIMM_HEAD_PREFIXES = ("head.", "head_drop.")  # the classifier, dropped: only the encoder is evaluated
MAE_DECODER_PREFIXES = ("decoder_", "mask_token")  # MAE's pre-training decoder, dropped likewise
_TIMM_SHAPE_KEYS = ("img_size", "patch_size", "in_chans", "width", "depth", "heads", "mlp_ratio")


@dataclass
class PretrainedInfo:
    """Where an encoder came from: what every result record carries to be traceable."""

    spec: str  # what the user passed
    kind: str  # "rils-bench" | "random" | "timm"
    method: str  # pre-training method, or "random" / "timm"
    arch: str  # registry name of the size (or a `vit_w..._d..._p..._...px` description for an unregistered timm ViT)
    sha256: str | None  # of the checkpoint file; None for random
    steps: int = 0
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_pretrained(
    spec: str | Path, *, seed: int = 0, arch: str | None = None
) -> tuple[ImageTextEncoder, PretrainedInfo]:
    """Rebuild the encoder named by `spec` (a checkpoint path, `random:<arch>` or a timm ViT state dict), in eval mode.

    `arch` applies to timm state dicts only: the registered size whose config (heads included) to use instead of
    the one inferred from the shapes.

    Raises:
        CheckpointError: missing file, neither a rils-bench checkpoint nor a timm ViT state dict, one without an
            image encoder, an unknown architecture, or weights that do not match the architecture.
    """
    spec = str(spec)
    try:
        pixels = parse_pixels_spec(spec)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    if pixels is not None:
        encoder = PixelEncoder(pixels)
        meta = {"model_config": encoder.config}
        return encoder.eval(), PretrainedInfo(spec, "pixels", "pixels", encoder.config["name"], None, meta=meta)
    as_timm = reference_as_timm_spec(spec)
    if as_timm is not None:  # the weights are a timm model's: loaded as one, recorded under the reference's name
        encoder, info = load_pretrained(as_timm, seed=seed)
        info.spec, info.kind, info.method = spec, "reference", spec.removeprefix("reference:")
        return encoder, info
    foreign = parse_foreign_spec(spec)
    if foreign is not None:
        source, name, path = foreign
        encoder = load_foreign(spec, source, name, path)
        meta = {"model_config": dict(encoder.config)}
        return encoder.eval(), PretrainedInfo(spec, source, source, name, sha256_of(path), meta=meta)
    if spec.startswith("rils-official:"):
        path = Path(spec.removeprefix("rils-official:")).expanduser()
        return _from_official(spec, path, read_official(path))
    if spec.startswith("random:"):
        name, img_size = parse_random_spec(spec)
        torch.manual_seed(seed)
        config = get_model_config(name, img_size=img_size)
        encoder = ImageTextEncoder(config)
        meta = {"model_config": config}
        return encoder.eval(), PretrainedInfo(spec, "random", "random", name, None, seed=seed, meta=meta)

    payload = read_tensor_file(Path(spec), expected="a rils-bench checkpoint or a timm ViT state dict")
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return _from_rils_checkpoint(spec, payload)
    official = _official_state(payload)
    if official is not None:
        return _from_official(spec, Path(spec), official)
    weights = _timm_state_dict(payload)
    if weights is None:
        raise CheckpointError(
            f"{spec} is neither a rils-bench checkpoint nor a timm ViT state dict (no format {FORMAT!r}, no "
            "'patch_embed.proj.weight' and 'cls_token')"
        )
    return _from_timm(spec, weights, arch)


def parse_random_spec(spec: str) -> tuple[str, int]:
    """`random:<arch>[@<px>]` -> `(arch, input side)`: `px`, or the size's own without `@`.

    Raises:
        CheckpointError: an unknown architecture, or a size that is not a positive multiple of the patch size.
    """
    name, at, size = spec.removeprefix("random:").partition("@")
    _check_arch(name, spec)
    own = get_model_config(name)
    if not at:
        return name, own["img_size"]
    patch = own["patch_size"]
    if not size.isdigit() or int(size) < patch or int(size) % patch:
        raise CheckpointError(f"{spec!r}: the input side after '@' must be a positive multiple of the patch ({patch})")
    return name, int(size)


def _check_arch(name: str, spec: str) -> None:
    if name not in list_models():
        raise CheckpointError(f"unknown architecture {name!r} in {spec!r}; registered: {', '.join(list_models())}")


def _from_rils_checkpoint(spec: str, payload: dict[str, Any]) -> tuple[ImageTextEncoder, PretrainedInfo]:
    meta = payload.get("meta", {})
    weights = payload.get("state_dict", {})
    state = strip_prefix(weights, ENCODER_PREFIX)
    if "model_config" not in meta or not any(k.startswith("visual.") for k in state):
        raise CheckpointError(f"{spec} holds no image encoder (no 'model_config' or no 'encoder.visual.*' weights)")
    try:
        config = resolve_config(meta["model_config"])
    except (KeyError, TypeError, ValueError) as err:  # a model this version does not know, or a malformed config
        reason = err.args[0] if err.args else err
        raise CheckpointError(f"{spec}: its model config cannot be built here: {reason}") from None
    encoder = ImageTextEncoder(config)
    load_strict(encoder, state, source=spec, target=meta["model_config"]["name"])
    info = PretrainedInfo(
        spec=spec,
        kind="rils-bench",
        method=meta.get("method", "unknown"),
        arch=meta["model_config"]["name"],
        sha256=sha256_of(spec),
        steps=int(meta.get("steps", 0)),
        seed=meta.get("seed"),
        meta={k: v for k, v in meta.items() if k != "config"},
    )
    return encoder.eval(), info


def _official_state(payload: Any) -> dict[str, torch.Tensor] | None:
    state = unwrap_state_dict(payload)
    return state if state is not None and is_official_layout(state) else None


def _from_official(spec: str, path: Path, state: dict[str, torch.Tensor]) -> tuple[ImageTextEncoder, PretrainedInfo]:
    mapped, sizes = to_encoder_state(state)
    match = registered_match(sizes)
    name = match or f"vit_w{sizes['width']}_d{sizes['depth']}_p{sizes['patch_size']}_{sizes['img_size']}px"
    config = get_model_config(match or list_models()[0], **sizes)
    encoder = ImageTextEncoder(config)
    load_strict(encoder, mapped, source=spec, target=f"{name} (RILS authors' layout)")
    info = PretrainedInfo(spec, "rils-official", "rils", name, sha256_of(path), meta={"model_config": config})
    return encoder.eval(), info


def _timm_state_dict(payload: Any) -> dict[str, torch.Tensor] | None:
    """The ViT weights of a timm state dict (possibly wrapped in `model` / `state_dict`), head dropped; else None."""
    payload = unwrap_state_dict(payload)
    if payload is None or not all(k in payload for k in ("patch_embed.proj.weight", "cls_token")):
        return None
    if not all(isinstance(v, torch.Tensor) for v in payload.values()):
        return None
    return {k: v for k, v in payload.items() if not k.startswith(TIMM_HEAD_PREFIXES + MAE_DECODER_PREFIXES)}


def timm_vit_shape(weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Encoder sizes read off a timm ViT state dict: img/patch size, channels, width, depth, heads, mlp ratio.

    Heads are not visible in the shapes; timm's ViTs use 64-wide heads, so `heads = max(1, width // 64)`.

    Raises:
        CheckpointError: no positional embedding for a square grid with a cls token, or no blocks.
    """
    proj = weights["patch_embed.proj.weight"]  # [D, C, P, P]
    width, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[-1]
    tokens = weights["pos_embed"].shape[1] if "pos_embed" in weights else 0
    # With a row for the cls token (ours, MAE, DeiT), or without (timm's `no_embed_class`, e.g. DINOv2 with registers).
    grid = next((g for g in (math.isqrt(max(tokens - 1, 0)), math.isqrt(tokens)) if g * g in (tokens - 1, tokens)), 0)
    depth = len({k.split(".")[1] for k in weights if k.startswith("blocks.")})
    if grid < 1 or depth == 0:
        raise CheckpointError("timm state dict: expected a cls token, a square pos_embed grid and at least one block")
    mlp_ratio = weights["blocks.0.mlp.fc1.weight"].shape[0] / width
    return dict(
        img_size=grid * patch, patch_size=patch, in_chans=in_chans, width=width, depth=depth,
        heads=max(1, width // 64), mlp_ratio=mlp_ratio,
    )  # fmt: skip


def _from_timm(
    spec: str, weights: dict[str, torch.Tensor], arch: str | None
) -> tuple[ImageTextEncoder, PretrainedInfo]:
    shape = timm_vit_shape(weights)
    if arch is not None:
        _check_arch(arch, spec)
        name, config = arch, get_model_config(arch, embed_dim=None)
    else:
        match = registered_match(shape)
        name = match or f"vit_w{shape['width']}_d{shape['depth']}_p{shape['patch_size']}_{shape['img_size']}px"
        # Any registered size serves as the base: every encoder key is overridden, the text tower is dropped.
        config = get_model_config(match or list_models()[0], **shape, embed_dim=None)
    encoder = ImageTextEncoder(config)
    load_strict(encoder, {f"visual.{k}": v for k, v in weights.items()}, source=spec, target=name)
    info = PretrainedInfo(spec, "timm", "timm", name, sha256_of(spec), meta={"model_config": config})
    return encoder.eval(), info


def registered_match(shape: dict[str, Any]) -> str | None:
    for name in list_models():
        config = get_model_config(name)
        if all(config[k] == shape[k] for k in _TIMM_SHAPE_KEYS):
            return name
    return None
