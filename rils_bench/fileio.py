"""File helpers every writer uses: content hashes and atomic writes (a reader never sees half a file)."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def sha256_of(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes: the identity of an archive, a checkpoint, a cached feature set."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for binary writing; rename it onto `path` only on success.

    A crash or kill inside the block leaves `path` as it was (absent or the previous version). The file gets the
    permissions `open()` would give it (0666 minus the umask: teammates can read results on a shared disk), and
    its bytes and the directory entry are fsynced before and after the rename, so a power cut cannot leave an
    empty file under the final name. Temporary files of writers that died (same host, process gone) are removed
    on the next write to the same path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as with open()
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_HOST = socket.gethostname().replace(".", "_")


def _remove_stale_temporaries(path: Path) -> None:
    """Delete `.{name}.{host}.{pid}.*.tmp` beside `path` whose writer on this host no longer runs."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{glob.escape(_HOST)}.*.tmp"):
        pid = tmp.name.removeprefix(f".{path.name}.{_HOST}.").split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
