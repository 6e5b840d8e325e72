"""File helpers every writer uses: content hashes and atomic writes (a reader never sees half a file or folder)."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import secrets
import shutil
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


def replace_dir(new: Path, final: Path) -> None:
    """Put the complete folder `new` at `final`; an old copy is moved aside first and removed only after the swap."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.tmp-old-{os.getpid()}")
        final.rename(old)
    new.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Make sure `path` is a writable directory or can be created as one, before any work starts; creates nothing.

    Raises:
        UserError: `path` is a file or lies under one, a name in it is too long, or the deepest folder of it that
            exists is not writable; the message names `what` (the flag it came from).
    """
    from rils_bench.errors import UserError

    path = Path(path).absolute()
    existing, to_create = path, []
    try:
        while not existing.exists():
            to_create.append(existing.name)
            existing = existing.parent
        if not existing.is_dir():
            raise UserError(f"{what} {path}: {existing} is a file, not a directory")
        probe = existing / f".rils-bench-write-test.{os.getpid()}.{secrets.token_hex(4)}"
        probe.touch(exist_ok=False)  # os.access is wrong for root and on some network file systems: try it
        probe.unlink()
    except OSError as err:
        raise UserError(f"{what} {path}: cannot be created or written ({err.strerror or type(err).__name__})") from None
    return path


def check_output_file(path: str | os.PathLike, what: str, *, force: bool = False) -> Path:
    """Make sure `path` can be written as a new file: its folder is writable, and it does not exist yet unless
    `force` (a file the user did not name as this run's target is never replaced silently).

    Raises:
        UserError: the file exists (without `force`), is a directory, or its folder is not writable.
    """
    from rils_bench.errors import UserError

    path = Path(path)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as err:  # e.g. a component longer than the file system allows
        raise UserError(f"{what} {path}: {err.strerror or type(err).__name__}") from None
    if is_dir:
        raise UserError(f"{what} {path}: is a directory; name a file")
    if exists and not force:
        raise UserError(f"{what} {path}: exists; refusing to replace it (pass --force to replace it)")
    check_output_dir(path.parent, what)
    return path


def tree_sha256(root: str | os.PathLike, *, cache: str | os.PathLike | None = None) -> str:
    """Hash of every file under `root`: its relative path and the sha256 of its bytes, in sorted order.

    A file's hash is reused from `cache` (a JSON file: relative path -> size, mtime, sha256) while its size and
    modification time are unchanged, so a second look at an unchanged folder reads no bytes, and touching a file
    (new mtime, same bytes) re-reads it once but gives the same hash. A damaged cache file is ignored and rewritten.
    """
    root = Path(root)
    known: dict[str, list] = {}
    if cache is not None and Path(cache).is_file():
        try:
            known = json.loads(Path(cache).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
    seen: dict[str, list] = {}
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name, stat = path.relative_to(root).as_posix(), path.stat()
        entry = known.get(name)
        if not (isinstance(entry, list) and entry[:2] == [stat.st_size, stat.st_mtime_ns]):
            entry = [stat.st_size, stat.st_mtime_ns, sha256_of(path)]
        seen[name] = entry
        digest.update(f"{name}\0{entry[2]}\n".encode())
    if cache is not None and seen != known:
        with contextlib.suppress(OSError), atomic_write(cache) as f:  # a read-only cache only costs speed
            f.write(json.dumps(seen, sort_keys=True).encode())
    return digest.hexdigest()
