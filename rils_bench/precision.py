"""One precision setting for pre-training, evaluation and dense fine-tuning: `auto | fp32 | bf16 | fp16`.

`auto` picks what pays on the device at hand:

- a GPU: bf16 autocast when it supports bf16 (no loss scaling needed), else fp16 autocast with a grad scaler;
- a CPU whose flags show native bf16 (`avx512_bf16` or `amx_bf16`): bf16 autocast. Measured on a 2-core Xeon
  with AMX: 2048^2 matmul 216 GFLOP/s fp32, 2156 bf16 (benchmarks/results/);
- any other CPU: fp32. Without native bf16 a bf16 matmul runs ~100x *slower* than fp32 (../shared/STACK.md).

Weights and optimizer state always stay fp32 (autocast casts on the fly). Losses, softmax temperatures and the
L2 normalisations of the contrastive and RILS losses run in fp32 whatever the setting: the loss modules and the
methods' `forward_loss` are wrapped in `float32_region` (see `rils_bench.methods.losses`), because a bf16
softmax at temperature 0.04 keeps 8 bits of mantissa for logits up to 25 and the contrastive logits are
differences of nearly equal cosines.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rils_bench.errors import UserError

if TYPE_CHECKING:  # the CLI imports PRECISIONS for its flags; `rils-bench table` must not load torch
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` is fp32, bf16 or fp16; `reason` says why `auto` chose it."""

    name: str
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return dtype_of(self.name)

    @property
    def autocast(self) -> bool:
        return self.name != "fp32"


def dtype_of(name: str) -> torch.dtype:
    """The torch dtype of fp32, bf16 or fp16."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def cpuinfo_field(name: str, cpuinfo: Path = _CPUINFO) -> str:
    """The first value of `name` in Linux's `/proc/cpuinfo` (e.g. `flags`, `model name`); "" where there is none."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str]:
    """The CPU feature flags the kernel reports; empty where there is no `/proc/cpuinfo`."""
    return frozenset(cpuinfo_field("flags", cpuinfo).split())


def resolve(
    precision: str,
    device: str | torch.device,
    *,
    flags: frozenset[str] | None = None,
    cuda_bf16: bool | None = None,
) -> Precision:
    """What `precision` means on `device`.

    Args:
        precision: one of `PRECISIONS`.
        device: where the model runs (`cpu`, `cuda`, `cuda:1`, ...).
        flags: the CPU's feature flags (default: this machine's, `cpu_flags()`).
        cuda_bf16: whether the GPU supports bf16 (default: `torch.cuda.is_bf16_supported()`).

    Raises:
        UserError: an unknown precision name.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    import torch

    device_type = torch.device(device).type
    if precision != "auto":
        return Precision(precision, device_type, "asked for")
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16:
            return Precision("bf16", device_type, "the GPU supports bf16")
        return Precision("fp16", device_type, "the GPU has no bf16: fp16 with a grad scaler")
    flags = cpu_flags() if flags is None else flags
    native = sorted(set(NATIVE_BF16_FLAGS) & flags)
    if native:
        return Precision("bf16", device_type, f"the CPU has native bf16 ({', '.join(native)})")
    return Precision(
        "fp32", device_type, "the CPU has no native bf16 (no avx512_bf16 / amx_bf16): bf16 would be slower"
    )


@contextlib.contextmanager
def autocast(precision: Precision) -> Iterator[None]:
    """`torch.autocast` for a resolved precision; a no-op context for fp32.

    When gradients are on (training) on a CPU it also picks SDPA's math kernel: torch's CPU flash-attention
    *backward* is ~6x slower in bf16 than in fp32 and ate the whole matmul gain; with the math kernel a RILS
    ViT-tiny/8 step (batch 64) took 0.71 s in bf16 against 1.00 s with flash (1.29-1.39 s fp32). Inference keeps
    the flash kernel, faster there in bf16: ViT-tiny/8 forward 670 img/s flash vs 467 math (174 fp32). Xeon with
    AMX, 2 threads.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not precision.autocast:
        yield
        return
    training_on_cpu = precision.device_type == "cpu" and torch.is_grad_enabled()
    math_attention = sdpa_kernel(SDPBackend.MATH) if training_on_cpu else contextlib.nullcontext()
    with torch.autocast(precision.device_type, dtype=precision.dtype), math_attention:
        yield


F = TypeVar("F", bound=Callable[..., Any])


def float32_region(fn: F) -> F:
    """Run `fn` in fp32 under any autocast: autocast is switched off for the devices of its tensor arguments and
    their floating-point tensors are cast to fp32. Outside autocast it calls `fn` unchanged (bit-identical fp32).

    torch's own `torch.amp.custom_fwd(cast_inputs=...)` does this for one device type fixed in advance and for
    `autograd.Function`s (it sets attributes on its first argument); the losses here take modules and any device.
    """

    import torch

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device_types = {t.device.type for t in tensors if torch.is_autocast_enabled(t.device.type)}
        if not device_types:
            return fn(*args, **kwargs)

        def cast(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64:
                return value.float()
            return value

        with contextlib.ExitStack() as stack:
            for device_type in device_types:
                stack.enter_context(torch.autocast(device_type, enabled=False))
            return fn(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def default_device() -> str:
    """Where rils-bench runs when no device is named: `cuda` when there is a GPU, else `cpu` (as mmengine does)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe(device: str | torch.device | None = None) -> str:
    """One line for `rils-bench env`: what `auto` resolves to on `device` (default `default_device()`), and why."""
    resolved = resolve("auto", device or default_device())
    return f"{resolved.name} on {resolved.device_type} ({resolved.reason})"
