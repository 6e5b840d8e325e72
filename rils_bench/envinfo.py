"""What `rils-bench env` reports: the versions that matter for reproducing a number."""

from __future__ import annotations

import platform
from importlib import metadata

_DISTRIBUTIONS = ("torch", "torchvision", "mmcv", "mmengine", "mmdet", "mmsegmentation", "timm", "open_clip_torch")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def mmcv_has_ops() -> bool:
    """True when mmcv's compiled extension loads (mmcv-lite, or a build without ops, has none)."""
    try:
        from mmcv.utils import ext_loader

        ext_loader.load_ext("_ext", ["nms", "roi_align_forward"])
    except Exception:  # ImportError, or AssertionError from ext_loader for a missing symbol
        return False
    return True


def describe_cpu() -> str:
    """The CPU's model name, core count and the flags that decide bf16 speed: what every benchmark figure is
    written next to (bf16 runs ~10x faster than fp32 with AMX and ~100x slower without native bf16)."""
    import os

    from rils_bench.precision import NATIVE_BF16_FLAGS, cpu_flags, cpuinfo_field

    model = cpuinfo_field("model name") or platform.processor() or platform.machine()
    flags = cpu_flags()
    shown = [f for f in ("avx2", "avx512f", *NATIVE_BF16_FLAGS) if f in flags]
    return f"{model}, {os.cpu_count()} cpus, flags: {' '.join(shown) or 'none of avx2/avx512f/bf16'}"


def describe_device() -> str:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"cuda ({torch.cuda.device_count()}x {names})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def collect() -> dict[str, str]:
    """Versions of the stack, whether mmcv has its ops, the device torch will use and what `--precision auto`
    resolves to there (and why)."""
    info = {"python": platform.python_version()}
    info.update({dist: _version(dist) for dist in _DISTRIBUTIONS})
    info["mmcv ops"] = "compiled" if mmcv_has_ops() else "MISSING (mmdet/mmseg models will not import)"
    info["device"] = describe_device()
    from rils_bench import precision

    info["precision auto"] = precision.describe()
    return info
