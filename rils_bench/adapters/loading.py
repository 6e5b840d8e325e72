"""Loading encoder weights into `RILSViT` with a full key report: nothing is ever missing silently.

Accepted files (all read with `torch.load(weights_only=True)`):

- an exported rils-bench checkpoint (`rils_bench.checkpoint`): weights under `encoder.visual.`;
- a file written by `rils-bench convert --to mmdet|mmseg` (`{"state_dict": {"backbone.*": ...}, "meta": ...}`),
  or any tensor-only detector / segmentor state dict with a `backbone.` prefix;
- a file written by `rils-bench convert --to timm` (a plain timm state dict, no prefix).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from mmengine.logging import print_log
from torch import nn

from rils_bench.checkpoint import FORMAT, CheckpointError

KNOWN_PREFIXES = ("encoder.visual.", "backbone.")  # tried in this order when no prefix is given


@dataclass
class KeyReport:
    """What loading a state dict into a module did, key by key.

    `missing`, `unexpected` and `mismatched` are errors; `ignored` keys were deliberately not used (with the
    reason), `new` parameters exist only in the fine-tuning module (e.g. relative position tables, zero-initialised),
    `resized` records interpolated position embeddings.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    resized: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every parameter of the module came from the file and every tensor of the file was used."""
        return not (self.missing or self.unexpected or self.mismatched)

    def lines(self) -> list[str]:
        """Human-readable report: a summary line, then one line per key that was not simply loaded."""
        out = [
            f"{self.source}: loaded {len(self.loaded)} tensors; missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
        ]
        out += [f"  missing key: {k}" for k in self.missing]
        out += [f"  unexpected key: {k}" for k in self.unexpected]
        out += [f"  shape mismatch: {k} ({why})" for k, why in self.mismatched.items()]
        out += [f"  ignored: {k} ({why})" for k, why in self.ignored.items()]
        out += [f"  new (not in the checkpoint, initialised): {k}" for k in self.new]
        out += [f"  resized: {k} ({how})" for k, how in self.resized.items()]
        return out


def read_tensor_file(path: str | os.PathLike) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)`; a missing file or one that needs full pickling is a `CheckpointError`."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unpickler errors of many types
        raise CheckpointError(
            f"{path} is not a tensor-only file ({type(err).__name__}); export it with rils-bench or convert it"
        ) from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a dict of tensors")
    return payload


def extract_visual_state(payload: dict[str, Any], prefix: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """The image-encoder tensors of a loaded file, prefix removed, and the prefix that was used.

    Without `prefix`: `encoder.visual.` for exported checkpoints, else the first of `KNOWN_PREFIXES` that any key
    has, else no prefix (a timm state dict).
    """
    if payload.get("format") == FORMAT or isinstance(payload.get("state_dict"), dict):
        state = payload["state_dict"]
    else:
        state = payload
    if prefix is None:
        prefix = next((p for p in KNOWN_PREFIXES if any(k.startswith(p) for k in state)), "")
    visual = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix) and torch.is_tensor(v)}
    return visual, prefix


def load_visual_state(module: nn.Module, state: dict[str, torch.Tensor], *, source: str = "state dict") -> KeyReport:
    """Load encoder tensors (timm names) into a `RILSViT`, adapting what fine-tuning changes, and report every key.

    Adaptations, each recorded in the report: the position embedding is resized to the module's grid; `cls_token`
    and `norm.*` are ignored when the module has none (ViTDet drops both). Nothing is raised here: see `ok`.
    """
    from rils_bench.adapters.backbone import resize_pos_embed

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
            side = int(round((target[1] - 1) ** 0.5))
            state["pos_embed"] = resize_pos_embed(pos, (side, side))
            report.resized["pos_embed"] = f"{_grid(pos)} -> {side}x{side} patches, bicubic"
    for key, value in list(state.items()):
        if key in expected and value.shape != expected[key].shape:
            report.mismatched[key] = f"file {tuple(value.shape)}, module {tuple(expected[key].shape)}"
            del state[key]
    result = module.load_state_dict(state, strict=False)
    report.unexpected = list(result.unexpected_keys)
    report.new = [k for k in result.missing_keys if k.startswith("rel_pos.")]
    report.missing = [k for k in result.missing_keys if k not in report.new and k not in report.mismatched]
    report.loaded = [k for k in state if k not in report.unexpected]
    return report


def _grid(pos: torch.Tensor) -> str:
    side = int(round((pos.shape[1] - 1) ** 0.5))
    return f"{side}x{side}"


def load_backbone(module: nn.Module, path: str | os.PathLike, *, prefix: str | None = None) -> KeyReport:
    """Load a checkpoint file into a `RILSViT` strictly: log the report, raise `CheckpointError` unless `ok`."""
    visual, used = extract_visual_state(read_tensor_file(path), prefix)
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
