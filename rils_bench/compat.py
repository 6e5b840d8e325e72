"""Every known runtime incompatibility of the pinned stack, handled here and nowhere else.

Nothing happens at import: callers (the CLI entry point, the test session) opt in explicitly.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

_FORCE_UNSAFE_LOAD = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


def use_offline_hubs() -> None:
    """Make hub clients fail fast instead of retrying for a minute.

    No machine of this project reaches a model hub; `timm.create_model(pretrained=True)` otherwise
    retries for ~59 s before failing. A user who *has* a hub can still export HF_HUB_OFFLINE=0.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def silence_known_warnings() -> None:
    """Filter the two harmless warnings the stack prints on import.

    `import mmdet.models` / `mmseg.models` emit an mmcv ImportWarning; pycocotools a numpy
    DeprecationWarning. Both are noise for our users and tell them nothing actionable.
    """
    warnings.filterwarnings("ignore", category=ImportWarning)
    # mmengine 0.10.7 resolves `mmdet::` / `mmseg::` config paths through pkg_resources, which
    # setuptools >= 81 removed; we pin setuptools 80.x (requirements/constraints.txt), which warns.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message=r".*np\..*", category=DeprecationWarning)
    # pycocotools' mask.decode under numpy 2 ("__array__ implementation doesn't accept a copy keyword").
    warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)


@contextlib.contextmanager
def weights_only_loads(allowed: Sequence[Any] = ()) -> Iterator[None]:
    """Inside the block, every `torch.load` is weights-only, with `allowed` added to torch's allow-list.

    mmengine 0.10.7 calls `torch.load` without `weights_only`; torch >= 2.6 then loads weights-only, unless the
    user's environment sets `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`. `TORCH_FORCE_WEIGHTS_ONLY_LOAD` wins over both, so
    a file that needs anything beyond tensors, primitives and `allowed` is refused, whatever the caller asked for.
    """
    import torch.serialization

    previous = {name: os.environ.get(name) for name in (_FORCE_WEIGHTS_ONLY, _FORCE_UNSAFE_LOAD)}
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    os.environ.pop(_FORCE_UNSAFE_LOAD, None)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fix_clip_benchmark_accuracy() -> None:
    """Make CLIP_benchmark 1.6.2's zero-shot top-k accuracy run under numpy >= 2.4.

    Its `zeroshot_classification.accuracy` does `float(tensor.sum(0, keepdim=True).cpu().numpy())`: a
    one-element 1-d array, which numpy 2.4 no longer converts to a Python float (TypeError). The replacement
    computes the same fractions with `.item()`; `evaluate` looks the function up at call time, so it uses it.
    """
    from clip_benchmark.metrics import zeroshot_classification

    def accuracy(output, target, topk=(1,)):
        pred = output.topk(max(topk), 1, True, True)[1].t()  # [k, N]
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]

    zeroshot_classification.accuracy = accuracy
