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


def describe_device() -> str:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"cuda ({torch.cuda.device_count()}x {names})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def collect() -> dict[str, str]:
    """Versions of the stack, whether mmcv has its ops, and the device torch will use."""
    info = {"python": platform.python_version()}
    info.update({dist: _version(dist) for dist in _DISTRIBUTIONS})
    info["mmcv ops"] = "compiled" if mmcv_has_ops() else "MISSING (mmdet/mmseg models will not import)"
    info["device"] = describe_device()
    return info
