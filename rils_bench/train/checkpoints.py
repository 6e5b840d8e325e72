"""The files a pre-training run reads and writes besides its data: mmengine's resume checkpoints and `load_from`.

Nothing read here can run code. Every load is weights-only (`compat.weights_only_loads`) with exactly the types
mmengine's training state holds (`resume_types`), and the runner writes its checkpoints so that they need no more
(`history_buffers_without_functions`). The sha256 seal beside each checkpoint catches a damaged or swapped file; it
is an unkeyed hash anyone can recompute, so it is never what stands between a file and the unpickler.
"""

from __future__ import annotations

import contextlib
import copyreg
import pickle
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from mmengine.runner import find_latest_checkpoint

from rils_bench import compat
from rils_bench.errors import UserError
from rils_bench.fileio import sha256_of

RESUME_SEAL = ".rils-bench.sha256"  # beside each mmengine checkpoint the runner wrote: the file's sha256
RUNNER_CHECKPOINT = re.compile(r"(iter|epoch)_\d+\.pth")


def resume_types() -> list[type | Any]:
    """What an mmengine resume file holds beyond tensors and primitives, as this runner writes it: the message
    hub's `HistoryBuffer`s (rebuilt from their arrays) and numpy arrays, dtypes and scalars."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    dtype_classes = [type(np.dtype(code)) for code in "?bBhHiIlLqQefd"]  # numpy >= 1.25 pickles a dtype's class
    return [HistoryBuffer, np.ndarray, np.dtype, *dtype_classes, np._core.multiarray._reconstruct,
            np._core.multiarray.scalar]  # fmt: skip


@contextlib.contextmanager
def refuse_unsafe_file(path: str | Path, what: str, *, structure: bool = True) -> Iterator[None]:
    """Turn what loading `path` can raise into one `UserError` line, `what` followed by the path: torch's
    weights-only refusal (naming what the file wanted), a file that is no torch checkpoint, or (with `structure`)
    one that is not the dict mmengine saves. Without `structure` only unpickling errors are caught: a file that was
    checked already (`check_resume_file`) and still fails later has met a real incompatibility, whose traceback
    is kept."""
    caught = (
        (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError) if structure else pickle.UnpicklingError
    )
    try:
        yield
    except caught as err:
        text = str(err).strip()
        if not _looks_like_torch_file(path):
            reason = "not a torch checkpoint"
        elif isinstance(err, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
            found = re.search(r"GLOBAL (\S+)|but got <class '([^']+)'>|unrecognized function (\S+)", text)
            needs = f" ({next(g for g in found.groups() if g)})" if found else ""
            reason = (
                f"refused, the file holds Python objects beyond weights and training state{needs}; "
                "loading it could run code"
            )
        elif isinstance(err, (KeyError, TypeError)):  # e.g. no 'meta': a weights file, not a training state
            reason = f"not an mmengine training checkpoint ({type(err).__name__}: {err})"
        else:
            reason = f"a damaged torch checkpoint ({text.splitlines()[0] if text else type(err).__name__})"
        raise UserError(f"{what}{path}: {reason}") from None


def _looks_like_torch_file(path: str | Path) -> bool:
    """A zip archive (`torch.save` since 1.6) or a pickle (the legacy format): anything else is no checkpoint."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"


def _rebuild_history_buffer(buffer: Any) -> tuple[Any, tuple]:
    return type(buffer), (buffer._log_history, buffer._count_history, buffer.max_length)


@contextlib.contextmanager
def history_buffers_without_functions() -> Iterator[None]:
    """While saving, pickle each `HistoryBuffer` as the call `HistoryBuffer(log, counts, max_length)`.

    mmengine pickles a buffer with its class's statistics functions, as `builtins.getattr` calls; allowing those
    on load would let a forged file put any reachable callable where mmengine later calls it.
    """
    from mmengine.logging import HistoryBuffer

    copyreg.dispatch_table[HistoryBuffer] = _rebuild_history_buffer
    try:
        yield
    finally:
        copyreg.dispatch_table.pop(HistoryBuffer, None)


def resume_target(work_dir: str | Path, *, load_from: str | None, resume: bool | str) -> str | None:
    """The file a run resumes from: `load_from` or the work dir's latest checkpoint; None when not resuming.

    Raises:
        UserError: `resume=True` and there is nothing to resume (`resume="auto"` starts from scratch then).
    """
    if not resume:
        return None
    found = load_from or find_latest_checkpoint(str(work_dir))
    if found is None and resume != "auto":
        raise UserError(
            f"--resume: no checkpoint to resume from in {work_dir}; start without --resume, or pass "
            "--resume auto to resume when there is one and start from scratch otherwise"
        )
    return found


_TRAINING_STATE = ("meta", "state_dict", "message_hub")  # what mmengine's `resume` reads from every file


def check_resume_file(path: str | Path, work_dir: str | Path) -> None:
    """Before a run resumes from `path`: it is this runner's file (`check_own_checkpoint`), it loads weights-only
    with `resume_types`, and it is a training state. The load is memory-mapped, so no tensor data is read.

    Raises:
        UserError: one line naming the file and what is wrong with it.
    """
    check_own_checkpoint(path, work_dir)
    with compat.weights_only_loads(resume_types()), refuse_unsafe_file(path, "cannot resume from "):
        payload = torch.load(path, map_location="cpu", mmap=True)
    missing = [k for k in _TRAINING_STATE if k not in payload] if isinstance(payload, dict) else list(_TRAINING_STATE)
    if missing:
        raise UserError(f"cannot resume from {path}: not an mmengine training checkpoint (no {', '.join(missing)})")


def check_own_checkpoint(path: str | Path, work_dir: str | Path) -> None:
    """Refuse to resume from `path` unless the runner wrote it in `work_dir` and it is unchanged since."""
    path, work_dir = Path(path).resolve(), Path(work_dir).resolve()
    seal = path.with_name(path.name + RESUME_SEAL)
    if not path.is_file():
        raise UserError(f"cannot resume: checkpoint {path} does not exist")
    if path.parent != work_dir or not RUNNER_CHECKPOINT.fullmatch(path.name):
        reason = f"only mmengine's iter_N.pth files inside the work dir {work_dir} are resumed"
    elif not seal.is_file():
        reason = f"it has no {RESUME_SEAL} seal, so rils-bench did not write it"
    elif seal.read_text().strip() != sha256_of(path):
        reason = "its content changed since rils-bench wrote it (sha256 differs from its seal)"
    else:
        return
    raise UserError(
        f"refusing to resume from {path}: {reason}. To start from other weights, use --cfg-options load_from=FILE"
    )
