"""Every known runtime incompatibility of the pinned stack, handled here and nowhere else.

Nothing happens at import: callers (the CLI entry point, the test session) opt in explicitly.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

_FORCE_UNSAFE_LOAD = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


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
def unsafe_load_for_mmengine_resume() -> Iterator[None]:
    """Allow full-pickle `torch.load` for mmengine's *own* resume files, and only inside this block.

    torch >= 2.6 loads with `weights_only=True` by default; mmengine 0.10.7 calls `torch.load` without
    the argument, and its Runner checkpoints pickle `HistoryBuffer`, numpy globals and
    `builtins.getattr`, so resuming fails. An allow-list would need `builtins.getattr` and is no safer
    than a full load. The files resumed here are ones the user's own run wrote; every other load in
    rils-bench (exported checkpoints, converted backbones) stays `weights_only=True`.
    """
    previous = os.environ.get(_FORCE_UNSAFE_LOAD)
    os.environ[_FORCE_UNSAFE_LOAD] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[_FORCE_UNSAFE_LOAD]
        else:
            os.environ[_FORCE_UNSAFE_LOAD] = previous
