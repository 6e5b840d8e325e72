"""`load_pretrained`: rebuild an encoder from what a user passes as `--ckpt`.

Accepted:
- an exported rils-bench checkpoint (`rils_bench.checkpoint`, written at the end of pre-training);
- `random:<arch>`: a randomly initialised encoder of a registered size, the floor every method must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rils_bench.checkpoint import CheckpointError, load_checkpoint
from rils_bench.fileio import sha256_of
from rils_bench.models.registry import ImageTextEncoder, get_model_config, list_models, resolve_config

ENCODER_PREFIX = "encoder."


@dataclass
class PretrainedInfo:
    """Where an encoder came from: what every result record carries to be traceable."""

    spec: str  # what the user passed
    kind: str  # "rils-bench" | "random"
    method: str  # pre-training method, or "random"
    arch: str  # registry name of the size
    sha256: str | None  # of the checkpoint file; None for random
    steps: int = 0
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_pretrained(spec: str | Path, *, seed: int = 0) -> tuple[ImageTextEncoder, PretrainedInfo]:
    """Rebuild the encoder named by `spec` (a checkpoint path or `random:<arch>`), in eval mode, on CPU.

    Raises:
        CheckpointError: missing file, not a rils-bench checkpoint, one without an image encoder, an unknown
            architecture, or weights that do not match the architecture the checkpoint names.
    """
    spec = str(spec)
    if spec.startswith("random:"):
        arch = spec.removeprefix("random:")
        if arch not in list_models():
            raise CheckpointError(f"unknown architecture {arch!r} in {spec!r}; registered: {', '.join(list_models())}")
        torch.manual_seed(seed)
        encoder = ImageTextEncoder(get_model_config(arch))
        return encoder.eval(), PretrainedInfo(spec, "random", "random", arch, None, seed=seed)

    payload = load_checkpoint(spec)
    meta = payload["meta"]
    weights = payload["state_dict"]
    state = {k.removeprefix(ENCODER_PREFIX): v for k, v in weights.items() if k.startswith(ENCODER_PREFIX)}
    if "model_config" not in meta or not any(k.startswith("visual.") for k in state):
        raise CheckpointError(f"{spec} holds no image encoder (no 'model_config' or no 'encoder.visual.*' weights)")
    encoder = ImageTextEncoder(resolve_config(meta["model_config"]))
    result = encoder.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{spec}: weights do not match {meta['model_config']['name']} "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
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
