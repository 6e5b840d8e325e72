"""`rils-bench convert`: an exported checkpoint -> backbone-only weights for timm, mmdet or mmseg.

The encoder already uses timm's parameter names, so converting is selecting `encoder.visual.*` and re-prefixing:

- `timm`: a plain state dict without prefix, loadable by `timm.models.vision_transformer.VisionTransformer` (cls
  token, `num_classes=0`, LayerNorm eps 1e-6, `qkv_bias=True`) with `strict=True`;
- `mmdet` / `mmseg`: `{"state_dict": {"backbone.<name>": ...}, "meta": {...}}`, the layout mmengine's
  `load_checkpoint` / `load_from` and `init_cfg=dict(type="Pretrained", prefix="backbone.")` read.

Every file written holds tensors and primitives only (it loads with `torch.load(weights_only=True)`). The key report
compares the converted tensors with a freshly built target model: every missing, unexpected and shape-mismatched
key is listed, none is skipped silently.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rils_bench.checkpoint import (
    BACKBONE_PREFIX,
    FORMAT,
    VISUAL_PREFIX,
    CheckpointError,
    KeyReport,
    compare_keys,
    read_tensor_file,
    strip_prefix,
)
from rils_bench.fileio import atomic_write, check_output_file, sha256_of
from rils_bench.models.foreign import OpenCLIPEncoder, TimmEncoder
from rils_bench.models.pretrained import PretrainedInfo, load_pretrained, registered_match, timm_vit_shape
from rils_bench.models.registry import get_model_config, list_models, resolve_config

TARGETS = {"timm": "", "mmdet": BACKBONE_PREFIX, "mmseg": BACKBONE_PREFIX}


@dataclass
class ConversionReport(KeyReport):
    """The key report of one conversion (relative to the target model), plus where the file went."""

    target: str = ""
    out: Path = Path()
    arch: str = ""
    n_tensors: int = 0
    n_dropped: int = 0  # tensors of the checkpoint that are not the image encoder (text tower, decoder, projection)

    def __post_init__(self) -> None:  # the CLI's first line: where the file went, then the key counts
        self.headline = (
            f"{self.source} -> {self.out} ({self.target}, {self.arch}): {self.n_tensors} tensors under prefix "
            f"{TARGETS[self.target]!r}; {self.n_dropped} non-encoder tensors left out; missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
        )


def visual_state_of(spec: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], int]:
    """`(encoder tensors with timm names, model config, source meta, number of other tensors)` of a checkpoint.

    `spec` is an exported checkpoint path or `random:<arch>` (a seed-0 random encoder). The checkpoint is read as
    is, not rebuilt, so that a damaged one reaches the key report instead of failing before it. Every other spec
    (`random:`, `timm:` / `open_clip:` / `rils-official:`, a timm or MAE file) is built by `backbone_source`.

    Raises:
        CheckpointError: unreadable file, or one that holds no image encoder.
    """
    spec = str(spec)
    payload = read_tensor_file(Path(spec), expected="a checkpoint") if Path(spec).is_file() else None
    if not (isinstance(payload, dict) and payload.get("format") == FORMAT):  # random:, foreign specs and layouts
        state, config, info = backbone_source(spec)
        meta = {"source": spec, "source_sha256": info.sha256, "method": info.method, "seed": info.seed}
        return state, config, meta, 0
    weights, meta = payload["state_dict"], payload["meta"]
    visual = strip_prefix(weights, VISUAL_PREFIX)
    if not visual or "model_config" not in meta:
        raise CheckpointError(f"{spec} holds no image encoder (no 'encoder.visual.*' weights or no model_config)")
    source = {"source": spec, "source_sha256": sha256_of(spec), "method": meta.get("method"), "seed": meta.get("seed")}
    return visual, dict(meta["model_config"]), source, len(weights) - len(visual)


def backbone_source(spec: str, *, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, Any], PretrainedInfo]:
    """What the dense backbone is built from, for any `--ckpt`: `(image-encoder tensors with timm names, a model
    config of that size, where it came from)`. A timm ViT's size is read off its tensors (heads from the model).

    Raises:
        CheckpointError: a bad checkpoint.
    """
    encoder, info = load_pretrained(spec, seed=seed)
    if isinstance(encoder, OpenCLIPEncoder):
        state, shape = open_clip_to_timm(encoder.model.visual)
    elif isinstance(encoder, TimmEncoder):
        vit = encoder.model
        state = {k: v for k, v in vit.state_dict().items() if not k.startswith(("head.", "head_drop."))}
        shape = {**timm_vit_shape(state), "heads": vit.blocks[0].attn.num_heads, **_timm_variant(vit)}
        # CLIP-style ViTs (pre-norm) embed patches without a bias: a zero bias computes the same.
        state.setdefault("patch_embed.proj.bias", torch.zeros(shape["width"]))
    else:
        return dict(encoder.visual.state_dict()), dict(encoder.config), info
    base = registered_match(shape) or list_models()[0]  # every encoder key is overridden by `shape`
    return state, get_model_config(base, **shape, embed_dim=None), info


def _timm_variant(vit: nn.Module) -> dict[str, Any]:
    """The backbone variant keys (`rils_bench.models.registry`) of a timm VisionTransformer."""
    from timm.layers import QuickGELU

    block = vit.blocks[0]
    return {
        "layer_scale": not isinstance(block.ls1, nn.Identity),
        "reg_tokens": int(getattr(vit, "num_reg_tokens", 0)),
        "no_embed_class": bool(getattr(vit, "no_embed_class", False)),
        "pre_norm": not isinstance(vit.norm_pre, nn.Identity),
        "norm_eps": float(getattr(vit.norm, "eps", 1e-6)),
        "act": "quick_gelu" if isinstance(getattr(block.mlp, "act", None), QuickGELU) else "gelu",
    }


# open_clip's ViT names -> timm's (ours). Its attention is nn.MultiheadAttention: in_proj is timm's qkv (q, k, v
# stacked in the same order), out_proj its proj. `proj` (the image projection) is not part of a backbone.
_OPEN_CLIP_KEYS = [
    (re.compile(r"^conv1\.weight$"), "patch_embed.proj.weight"),
    (re.compile(r"^class_embedding$"), "cls_token"),
    (re.compile(r"^positional_embedding$"), "pos_embed"),
    (re.compile(r"^ln_pre\."), "norm_pre."),
    (re.compile(r"^ln_post\."), "norm."),
    (re.compile(r"^transformer\.resblocks\.(\d+)\.ln_1\."), r"blocks.\1.norm1."),
    (re.compile(r"^transformer\.resblocks\.(\d+)\.ln_2\."), r"blocks.\1.norm2."),
    (re.compile(r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$"), r"blocks.\1.attn.qkv.\2"),
    (re.compile(r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\."), r"blocks.\1.attn.proj."),
    (re.compile(r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\."), r"blocks.\1.mlp.fc1."),
    (re.compile(r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\."), r"blocks.\1.mlp.fc2."),
    (re.compile(r"^transformer\.resblocks\.(\d+)\.ls_(\d)\.gamma$"), r"blocks.\1.ls\2.gamma"),
]


def open_clip_to_timm(visual: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`(tensors under timm names, model-config sizes and variant keys)` of an open_clip ViT image tower.

    Its patch convolution has no bias (a zero one is added), the class embedding and position embedding gain a
    batch axis, and it normalises before the blocks (`ln_pre` -> `norm_pre`) with LayerNorm eps 1e-5.
    """
    from open_clip.transformer import QuickGELU

    state: dict[str, torch.Tensor] = {}
    for key, value in visual.state_dict().items():
        for pattern, target in _OPEN_CLIP_KEYS:
            if pattern.search(key):
                state[pattern.sub(target, key)] = value
                break
    width = visual.transformer.width
    state["cls_token"] = state["cls_token"].reshape(1, 1, width)
    state["pos_embed"] = state["pos_embed"].unsqueeze(0)
    state["patch_embed.proj.bias"] = torch.zeros(width)
    block = visual.transformer.resblocks[0]
    patch = visual.conv1.weight.shape[-1]
    shape = {
        "img_size": int(math.isqrt(state["pos_embed"].shape[1] - 1) * patch),
        "patch_size": patch,
        "in_chans": visual.conv1.weight.shape[1],
        "width": width,
        "depth": len(visual.transformer.resblocks),
        "heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.c_fc.out_features / width,
        "layer_scale": not isinstance(block.ls_1, nn.Identity),
        "pre_norm": True,
        "norm_eps": float(visual.ln_pre.eps),
        "act": "quick_gelu" if isinstance(block.mlp.gelu, QuickGELU) else "gelu",
    }
    return state, shape


def target_model(target: str, model_config: dict[str, Any]) -> nn.Module:
    """A freshly built model of `target` for the encoder size `model_config`, to check keys against."""
    config = resolve_config(model_config)
    if target == "timm":
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(
            img_size=config["img_size"], patch_size=config["patch_size"], in_chans=config["in_chans"],
            num_classes=0, embed_dim=config["width"], depth=config["depth"], num_heads=config["heads"],
            mlp_ratio=config["mlp_ratio"], qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=config["norm_eps"]),
            init_values=1.0 if config["layer_scale"] else None, reg_tokens=config["reg_tokens"],
            no_embed_class=config["no_embed_class"], pre_norm=config["pre_norm"],
            act_layer="quick_gelu" if config["act"] == "quick_gelu" else None,
        )  # fmt: skip
    if target in TARGETS:
        from rils_bench.adapters.backbone import RILSViT

        return RILSViT(config)
    raise ValueError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")


def write_backbone(
    state: dict[str, torch.Tensor], *, to: str, out: str | os.PathLike, meta: dict[str, Any] | None = None
) -> Path:
    """Write encoder tensors (timm names) for `to`, atomically; returns the path. Tensor-only."""
    if to not in TARGETS:
        raise ValueError(f"unknown target {to!r}; known: {', '.join(TARGETS)}")
    prefixed = {TARGETS[to] + k: v.detach().cpu().contiguous() for k, v in state.items()}
    payload: dict[str, Any] = prefixed if to == "timm" else {"state_dict": prefixed, "meta": dict(meta or {})}
    with atomic_write(out) as f:
        torch.save(payload, f)
    return Path(out)


def default_out(spec: str, to: str) -> Path:
    """`<checkpoint stem>_<target>.pth` beside the checkpoint; `random_<arch>_<target>.pth` here for random specs."""
    if spec.startswith("random:"):
        return Path(f"random_{spec.removeprefix('random:')}_{to}.pth")
    if spec.startswith(("timm:", "open_clip:", "rils-official:")):  # the file after `=` (or after the prefix)
        spec = spec.partition("=")[2] or spec.partition(":")[2]
    path = Path(spec)
    return path.with_name(f"{path.stem}_{to}.pth")


def resolve_out(spec: str, to: str, out: str | os.PathLike | None) -> Path:
    """Where the conversion goes: `out`, or the default name inside `out` when it is a folder, or beside the input.

    Raises:
        CheckpointError: the output would replace the input checkpoint.
    """
    target = default_out(spec, to) if out is None else Path(out)
    try:
        is_folder, exists = target.is_dir(), target.exists()
    except OSError:  # a name the file system refuses: `check_output_file` says so in one line
        return target
    if is_folder:
        target = target / default_out(spec, to).name
    if not spec.startswith("random:") and exists and target.resolve() == Path(spec).resolve():
        raise CheckpointError(
            f"--out {out} is the input checkpoint {spec}: refusing to overwrite it; give another path"
        )
    return target


def convert_checkpoint(
    spec: str | os.PathLike, *, to: str, out: str | os.PathLike | None = None, force: bool = False
) -> ConversionReport:
    """Convert `spec` (checkpoint path or `random:<arch>`) for `to` and check its keys against the target model.

    The file is written even when keys do not match, so that it can be inspected; `report.ok` says whether it did.
    An existing output file is replaced only with `force`; the output is checked before the input is read.
    """
    if to not in TARGETS:
        raise CheckpointError(f"unknown conversion target {to!r}; choose one of {', '.join(TARGETS)}")
    spec = str(spec)
    out = check_output_file(resolve_out(spec, to, out), "--out", force=force)
    state, model_config, source, n_dropped = visual_state_of(spec)
    keys = compare_keys(state, target_model(to, model_config), source=spec)
    meta = {**source, "target": to, "arch": model_config["name"], "model_config": model_config}
    path = write_backbone(state, to=to, out=out, meta=meta)
    return ConversionReport(
        source=spec, target=to, out=path, arch=model_config["name"], n_tensors=len(state), n_dropped=n_dropped,
        loaded=keys.loaded, missing=keys.missing, unexpected=keys.unexpected, mismatched=keys.mismatched,
    )  # fmt: skip
