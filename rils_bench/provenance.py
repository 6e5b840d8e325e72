"""Which code produced a checkpoint or a number: recorded in every export and result record."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_sha(repo: Path | None = None) -> str:
    """The commit of the code that ran, with `-dirty` when the tree had uncommitted changes; "unknown" outside git."""
    cwd = repo or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
