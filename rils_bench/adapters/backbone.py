"""`RILSViT`: the pre-trained image encoder as a dense-prediction backbone, one implementation for mmdet and mmseg.

The module holds the encoder's weights under the encoder's own (timm) names - `patch_embed.proj`, `cls_token`,
`pos_embed`, `blocks.N.*`, `norm` - so a checkpoint maps onto it by a prefix alone. What dense transfer adds:

- the position embedding becomes a trainable parameter, resized (bicubic) to the fine-tuning size at load and to
  every input's patch grid in `forward`; at the pre-training size both resizes are the identity;
- ViTDet's window attention: every block not named in `global_indices` attends within non-overlapping windows
  (the grid zero-padded to a multiple of the window), optionally with decomposed relative position biases;
- stochastic depth (drop path) rising linearly with depth;
- the outputs a neck needs: maps `[B, D, H/p, W/p]` after chosen blocks (the last for ViTDet's simple pyramid;
  4/12, 6/12, 8/12, 12/12 of the depth for UperNet).

Checkpoints enter through `init_cfg=dict(type="Pretrained", checkpoint=PATH)`; see `rils_bench.adapters.loading`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from timm.layers import PatchEmbed, QuickGELU, resample_abs_pos_embed
from timm.models.vision_transformer import Block
from timm.models.vision_transformer_sam import window_partition, window_unpartition
from torch import nn

from rils_bench.models.registry import get_model_config, resolve_config
from rils_bench.models.vit import sincos_2d_pos_embed
from rils_bench.precision import autocast, resolve

UPERNET_FRACTIONS = (4, 6, 8, 12)  # blocks 4, 6, 8, 12 of 12 (BEiT / MAE's UperNet), scaled to other depths


def resolve_out_indices(out_indices: str | Sequence[int], depth: int) -> tuple[int, ...]:
    """Block indices (0-based) whose outputs the backbone returns.

    `"last"`: the last block (ViTDet). `"uper"`: blocks `round(depth * k / 12)` for k in 4, 6, 8, 12 (1-based), i.e.
    3, 5, 7, 11 at depth 12 and 7, 11, 15, 23 at depth 24; a shallow model may repeat a block. A sequence is taken
    as given (negative indices count from the end).
    """
    if out_indices == "last":
        return (depth - 1,)
    if out_indices == "uper":
        return tuple(max(1, round(depth * k / 12)) - 1 for k in UPERNET_FRACTIONS)
    if isinstance(out_indices, str) or not out_indices or any(not -depth <= i < depth for i in out_indices):
        raise ValueError(f"out_indices {out_indices!r}: expected 'last', 'uper' or block indices of {depth} blocks")
    return tuple(i % depth for i in out_indices)


def resolve_global_indices(global_indices: str | Sequence[int], depth: int) -> tuple[int, ...]:
    """Blocks that keep global attention when the others use windows.

    `"auto"`: every `depth // 4`-th block, counted from the end of each quarter (2, 5, 8, 11 at depth 12; 5, 11, 17,
    23 at depth 24: ViTDet's choice); every block when `depth < 4`.
    """
    if global_indices == "auto":
        step = max(1, depth // 4)
        return tuple(i for i in range(depth) if (i + 1) % step == 0)
    return tuple(i % depth for i in global_indices)


class DecomposedRelPos(nn.Module):
    """Decomposed relative position bias (MViTv2, ViTDet): `bias[(y,x), (y',x')] = q . Rh[y-y'] + q . Rw[x-x']`.

    The tables start at zero, so a new bias does not change what a pre-trained block computes until it is trained.
    A grid of another size than `size` uses linearly resized tables.
    """

    def __init__(self, size: int, head_dim: int) -> None:
        super().__init__()
        self.h = nn.Parameter(torch.zeros(2 * size - 1, head_dim))
        self.w = nn.Parameter(torch.zeros(2 * size - 1, head_dim))

    @staticmethod
    def _table(table: torch.Tensor, n: int) -> torch.Tensor:
        """`[n, n, C]` with entry `(i, j)` = the table's row for offset `i - j`."""
        if table.shape[0] != 2 * n - 1:
            table = F.interpolate(table.T[None], size=2 * n - 1, mode="linear", align_corners=False)[0].T
        offsets = torch.arange(n, device=table.device)
        return table[offsets[:, None] - offsets[None, :] + n - 1]

    def forward(self, q: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Additive attention bias `[B, heads, N, N]` for queries `q` `[B, heads, N, C]` of an h x w grid."""
        h, w = grid
        batch, heads, _, channels = q.shape
        q = q.reshape(batch, heads, h, w, channels)
        bias_h = torch.einsum("bnyxc,ykc->bnyxk", q, self._table(self.h, h))  # [B, n, h, w, h]
        bias_w = torch.einsum("bnyxc,xkc->bnyxk", q, self._table(self.w, w))  # [B, n, h, w, w]
        bias = bias_h[..., :, None] + bias_w[..., None, :]  # [B, n, h, w, h, w]
        return bias.reshape(batch, heads, h * w, h * w)


def _attend(block: Block, x: torch.Tensor, rel_pos: DecomposedRelPos | None) -> torch.Tensor:
    """The block's attention over an h x w grid of tokens `[B, h, w, C]`, with an optional relative bias."""
    batch, h, w, channels = x.shape
    tokens = x.reshape(batch, h * w, channels)
    attn = block.attn
    if rel_pos is None:
        return attn(tokens).reshape(batch, h, w, channels)
    # timm's Attention takes only a precomputed mask; the decomposed bias depends on q, so split qkv here.
    qkv = attn.qkv(tokens).reshape(batch, h * w, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # [B, heads, N, hd] each
    dropout = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=rel_pos(q, (h, w)), dropout_p=dropout)
    return attn.proj(out.transpose(1, 2).reshape(batch, h * w, -1)).reshape(batch, h, w, channels)


def spatial_block(block: Block, x: torch.Tensor, window: int, rel_pos: DecomposedRelPos | None) -> torch.Tensor:
    """A timm `Block` on a token grid `[B, H, W, C]`: attention within windows (`window > 0`) or global.

    The same weights and residual structure as `Block.forward`; only the set of tokens each token attends to changes
    (ViTDet pads after the first norm, so padded tokens are zeros that every window token can attend to).
    """
    height, width = x.shape[1:3]
    y = block.norm1(x)
    if window:
        y, padded = window_partition(y, window)  # zero-pads H and W up to multiples of the window (ViTDet)
        y = window_unpartition(_attend(block, y, rel_pos), window, (height, width), padded)
    else:
        y = _attend(block, y, rel_pos)
    x = x + block.drop_path1(block.ls1(y))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


class RILSViT(BaseModule):
    """The rils-bench image encoder as an mmdet / mmseg backbone.

    Args:
        arch: registry name of the encoder size, or a model config dict (as saved in checkpoints).
        img_size: fine-tuning image side in pixels; the position embedding parameter has this grid. Default: the
            pre-training size.
        out_indices: see `resolve_out_indices`.
        final_norm: apply the encoder's final LayerNorm to every output (DINOv2's intermediate layers). Without it
            the module has no `norm` and a checkpoint's `norm.*` is reported as ignored.
        with_cls_token: prepend the cls token as in pre-training (then the backbone computes exactly what the
            encoder does). ViTDet drops it: window attention needs a pure grid.
        window_size: window side in patches for the non-global blocks; 0 = global attention everywhere; `"auto"` =
            the pre-training grid (ViTDet: 14 for 224 px / 16), at most the fine-tuning grid.
        global_indices: blocks that keep global attention when windows are used; see `resolve_global_indices`.
        use_rel_pos: decomposed relative position biases in every block (ViTDet), zero-initialised.
        drop_path_rate: stochastic depth of the last block; block i gets `rate * i / (depth - 1)`.
        precision: `fp32` (default: the surrounding autocast, if any, decides) or `bf16` / `fp16` / `auto`: this
            module's forward runs under autocast in it and returns fp32 maps. For CPU fine-tuning, where mmcv's
            kernels (nms, roi_align) take fp32 only, so autocast cannot wrap the whole detector.
        init_cfg: `dict(type="Pretrained", checkpoint=PATH[, prefix=...])` loads weights (`init_weights`).

    Returns from `forward`: a tuple of `[B, D, H/p, W/p]` maps, one per output index.
    """

    def __init__(
        self,
        arch: str | dict[str, Any] = "rils_vit_base_patch16",
        *,
        img_size: int | None = None,
        out_indices: str | Sequence[int] = "last",
        final_norm: bool = True,
        with_cls_token: bool = True,
        window_size: int | str = 0,
        global_indices: str | Sequence[int] = "auto",
        use_rel_pos: bool = False,
        drop_path_rate: float = 0.0,
        precision: str = "fp32",
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.precision = precision
        config = get_model_config(arch) if isinstance(arch, str) else resolve_config(arch)
        self.arch = config["name"]
        # Variants of foreign ViTs (timm DINOv2 / CLIP, open_clip; see `rils_bench.models.registry`): defaults are ours.
        n_reg, self.no_embed_class = config["reg_tokens"], config["no_embed_class"]
        norm_layer = partial(nn.LayerNorm, eps=config["norm_eps"])
        act_layer = QuickGELU if config["act"] == "quick_gelu" else nn.GELU
        if n_reg and not with_cls_token:
            raise ValueError("register tokens need the prefix tokens (with_cls_token=True, global attention)")
        self.patch_size = config["patch_size"]
        self.pretrain_grid = config["img_size"] // self.patch_size
        self.width, depth = config["width"], config["depth"]
        self.img_size = img_size or config["img_size"]
        self.out_indices = resolve_out_indices(out_indices, depth)
        # "auto": the pre-training grid, but never wider than the fine-tuning grid (a 37-patch DINOv2 window on a
        # 10 x 10 map would attend over 37 x 37 zero-padded tokens: 14x the work of global attention, same result).
        grid_side = math.ceil(self.img_size / self.patch_size)
        self.window_size = min(self.pretrain_grid, grid_side) if window_size == "auto" else int(window_size)
        if with_cls_token and (self.window_size or use_rel_pos):
            # ViTDet drops the cls token: windows and relative offsets are defined on a pure patch grid.
            raise ValueError("window attention and relative position biases need with_cls_token=False")
        global_blocks = set(resolve_global_indices(global_indices, depth)) if self.window_size else set(range(depth))
        self.block_windows = [0 if i in global_blocks else self.window_size for i in range(depth)]

        grid = self.img_size // self.patch_size
        self.patch_embed = PatchEmbed(
            self.img_size, self.patch_size, config["in_chans"], self.width,
            output_fmt="NHWC", strict_img_size=False, dynamic_img_pad=True,
        )  # fmt: skip
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.width)) if with_cls_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, n_reg, self.width)) if n_reg else None
        # Trainable here (ViTDet and MAE fine-tune it); sin-cos like the encoder's until a checkpoint is loaded.
        # [1, (1+)G*G, D]: no row for the cls token when it gets no position (timm's `no_embed_class`).
        pos = sincos_2d_pos_embed(self.width, grid, cls_token=not self.no_embed_class)
        self.pos_embed = nn.Parameter(pos.unsqueeze(0))
        self.norm_pre = norm_layer(self.width) if config["pre_norm"] else None
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        init_values = 1.0 if config["layer_scale"] else None  # layer scale: overwritten by a checkpoint's gammas
        self.blocks = nn.ModuleList(
            Block(
                self.width,
                config["heads"],
                config["mlp_ratio"],
                qkv_bias=True,
                init_values=init_values,
                norm_layer=norm_layer,
                act_layer=act_layer,
                drop_path=r,
            )  # fmt: skip
            for r in rates
        )
        self.rel_pos = None
        if use_rel_pos:
            head_dim = self.width // config["heads"]
            self.rel_pos = nn.ModuleList(DecomposedRelPos(w or grid, head_dim) for w in self.block_windows)
        self.norm = norm_layer(self.width) if final_norm else None

    @property
    def num_layers(self) -> int:
        """Number of transformer blocks (layer-wise lr decay counts them)."""
        return len(self.blocks)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`[B, C, H, W] -> tuple of [B, D, ceil(H/p), ceil(W/p)]` (inputs are zero-padded to a patch multiple)."""
        if self.precision == "fp32":
            return self._forward(images)
        with autocast(resolve(self.precision, images.device)):
            outputs = self._forward(images)
        return tuple(out.float() for out in outputs)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.patch_embed(images)  # [B, h, w, D]
        batch, h, w, dim = x.shape
        # Bicubic, no antialiasing (the same grid returns the parameter itself). [1, (1+)h*w, D]
        pos_prefix = 0 if self.no_embed_class else 1
        pos = resample_abs_pos_embed(self.pos_embed, (h, w), num_prefix_tokens=pos_prefix, antialias=False)
        x = x.reshape(batch, h * w, dim) + pos[:, pos_prefix:]  # [B, L, D]
        n_prefix = 0
        if self.cls_token is not None:
            # Exactly the encoder's computation: cls (then registers) first, every block global (checked in __init__).
            cls = self.cls_token if self.no_embed_class else self.cls_token + pos[:, :1]
            prefix = [cls] if self.reg_token is None else [cls, self.reg_token]
            x = torch.cat([p.expand(batch, -1, -1) for p in prefix] + [x], dim=1)  # [B, 1+R+L, D]
            n_prefix = 1 + (0 if self.reg_token is None else self.reg_token.shape[1])
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        outputs = []
        for i, block in enumerate(self.blocks):
            if n_prefix:
                x = block(x)
            else:
                rel_pos = None if self.rel_pos is None else self.rel_pos[i]
                x = spatial_block(block, x.view(batch, h, w, dim), self.block_windows[i], rel_pos)
                x = x.reshape(batch, h * w, dim)
            if i in self.out_indices:
                out = (self.norm(x) if self.norm is not None else x)[:, n_prefix:]  # [B, L, D]
                out = out.transpose(1, 2).reshape(batch, dim, h, w)
                outputs += [out] * self.out_indices.count(i)
        return tuple(outputs)

    def init_weights(self) -> None:
        """Load `init_cfg`'s checkpoint (strict: any missing or unexpected key raises); random init otherwise."""
        if self.init_cfg and self.init_cfg.get("type") == "Pretrained":
            from rils_bench.adapters.loading import load_backbone

            load_backbone(self, self.init_cfg["checkpoint"], prefix=self.init_cfg.get("prefix"))
            self._is_init = True
        else:
            super().init_weights()
