"""Loading encoder weights into `RILSViT` with a full key report: nothing is ever missing silently.

Accepted files (all read with `torch.load(weights_only=True)`):

- an exported rils-bench checkpoint (`rils_bench.checkpoint`): weights under `encoder.visual.`;
- a file written by `rils-bench convert --to mmdet|mmseg` (`{"state_dict": {"backbone.*": ...}, "meta": ...}`),
  or any tensor-only detector / segmentor state dict with a `backbone.` prefix;
- a file written by `rils-bench convert --to timm` (a plain timm state dict, no prefix).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from mmengine.logging import print_log
from timm.layers import resample_abs_pos_embed
from torch import nn

from rils_bench.checkpoint import (
    FORMAT,
    IMAGE_PREFIXES,
    CheckpointError,
    KeyReport,
    compare_keys,
    find_prefix,
    read_tensor_file,
    strip_prefix,
)


def extract_visual_state(payload: dict[str, Any], prefix: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """The image-encoder tensors of a loaded file, prefix removed, and the prefix that was used.

    Without `prefix`: the first of `IMAGE_PREFIXES` (`encoder.visual.`, `backbone.`) that any key has, else no
    prefix (a timm state dict).
    """
    if payload.get("format") == FORMAT or isinstance(payload.get("state_dict"), dict):
        state = payload["state_dict"]
    else:
        state = payload
    if prefix is None:
        prefix = find_prefix(state, IMAGE_PREFIXES)
    return strip_prefix(state, prefix), prefix


def load_visual_state(module: nn.Module, state: dict[str, torch.Tensor], *, source: str = "state dict") -> KeyReport:
    """Load encoder tensors (timm names) into a `RILSViT`, adapting what fine-tuning changes, and report every key.

    Adaptations, each recorded in the report: the position embedding is resized to the module's grid; `cls_token`
    and `norm.*` are ignored when the module has none (ViTDet drops both). Nothing is raised here: see `ok`.
    """
    state = dict(state)
    report = KeyReport(source=source)
    if getattr(module, "cls_token", True) is None and "cls_token" in state:
        del state["cls_token"]
        report.ignored["cls_token"] = "with_cls_token=False"
    if getattr(module, "norm", True) is None:
        for key in [k for k in state if k.startswith("norm.")]:
            del state[key]
            report.ignored[key] = "final_norm=False"
    expected = module.state_dict()
    pos = state.get("pos_embed")
    if pos is not None and "pos_embed" in expected and pos.shape != expected["pos_embed"].shape:
        target = expected["pos_embed"].shape
        if pos.shape[-1] == target[-1]:
            prefix = 0 if getattr(module, "no_embed_class", False) else 1  # a position row for the cls token or not
            side = int(round((target[1] - prefix) ** 0.5))
            state["pos_embed"] = resample_abs_pos_embed(pos, (side, side), num_prefix_tokens=prefix, antialias=False)
            report.resized["pos_embed"] = f"{_grid(pos, prefix)} -> {side}x{side} patches, bicubic"
    keys = compare_keys(state, module, source=source)
    module.load_state_dict({k: state[k] for k in keys.loaded}, strict=False)
    report.loaded, report.unexpected, report.mismatched = keys.loaded, keys.unexpected, keys.mismatched
    report.new = [k for k in keys.missing if k.startswith("rel_pos.")]  # ViTDet's, zero-initialised
    report.missing = [k for k in keys.missing if k not in report.new]
    return report


def _grid(pos: torch.Tensor, prefix: int = 1) -> str:
    side = int(round((pos.shape[1] - prefix) ** 0.5))
    return f"{side}x{side}"


def load_backbone(module: nn.Module, path: str | os.PathLike, *, prefix: str | None = None) -> KeyReport:
    """Load a checkpoint file into a `RILSViT` strictly: log the report, raise `CheckpointError` unless `ok`."""
    payload = read_tensor_file(path, expected="a rils-bench checkpoint, a converted backbone or a timm state dict")
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a dict of tensors")
    visual, used = extract_visual_state(payload, prefix)
    if not visual:
        raise CheckpointError(f"{path} holds no image-encoder weights under prefix {used!r}")
    report = load_visual_state(module, visual, source=f"{path} [prefix {used!r}]")
    for line in report.lines():
        print_log(line, logger="current")
    if not report.ok:
        raise CheckpointError(
            f"{path} does not match the backbone ({len(report.missing)} missing, {len(report.unexpected)} unexpected, "
            f"{len(report.mismatched)} shape-mismatched keys; see the log)"
        )
    return report
