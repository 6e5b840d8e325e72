"""The optimizer wrapper of a resolved precision, for pre-training and for mmdet / mmseg fine-tuning.

mmengine's `AmpOptimWrapper` asserts a GPU, so on a CPU `CPUAutocastOptimWrapper` adds `torch.autocast("cpu")`
to `OptimWrapper.optim_context` and changes nothing else: stepping, gradient accumulation, clipping and its
state dict are `OptimWrapper`'s. bf16 keeps fp32's exponent range, so it needs no loss scaling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

from rils_bench.precision import Precision, autocast

_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """`OptimWrapper` whose forward runs under `torch.autocast("cpu", dtype)`.

    Args:
        dtype: `bfloat16`, `float16` or `float32` (the latter: autocast off, exactly `OptimWrapper`).
        **kwargs: `OptimWrapper`'s (optimizer, accumulative_counts, clip_grad).
    """

    def __init__(self, dtype: str = "bfloat16", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        names = {name: short for short, name in _DTYPE_NAMES.items()}
        if dtype not in names:
            raise ValueError(f"CPUAutocastOptimWrapper dtype must be one of {sorted(names)}, got {dtype!r}")
        self.precision = Precision(names[dtype], "cpu", "the optimizer wrapper's dtype")

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), autocast(self.precision):
            yield


def optim_wrapper_for(precision: Precision) -> dict[str, Any]:
    """The `type` (and `dtype`) of the optimizer wrapper that trains in `precision`: `OptimWrapper` for fp32,
    mmengine's `AmpOptimWrapper` on a GPU (fp16 with its dynamic loss scaler), `CPUAutocastOptimWrapper` on a CPU."""
    if not precision.autocast:
        return {"type": "OptimWrapper"}
    if precision.device_type == "cpu":
        return {"type": "CPUAutocastOptimWrapper", "dtype": _DTYPE_NAMES[precision.name]}
    return {"type": "AmpOptimWrapper", "dtype": _DTYPE_NAMES[precision.name]}


def apply_precision(optim_wrapper: dict[str, Any], precision: Precision) -> None:
    """Set `optim_wrapper`'s type for `precision` in place (a `dtype` left from another type is dropped)."""
    optim_wrapper.pop("dtype", None)
    optim_wrapper.update(optim_wrapper_for(precision))
