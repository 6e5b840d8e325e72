"""`atomic_write`: all or nothing, permissions as `open()` gives them, leftovers of dead writers cleaned."""

import os
import subprocess
import sys

import pytest

from rils_bench.fileio import _HOST, atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "record.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["record.json"]


def test_written_files_are_readable_by_the_group_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "ckpt.pth") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "ckpt.pth").stat().st_mode & 0o777 == 0o644


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".table.csv.{_HOST}.{int(dead.stdout)}.abcd1234.tmp"
    live = tmp_path / f".table.csv.{_HOST}.{os.getpid()}.abcd1234.tmp"
    other = tmp_path / f".other.csv.{_HOST}.{int(dead.stdout)}.abcd1234.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    with atomic_write(tmp_path / "table.csv") as f:
        f.write(b"a,b\n")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "table.csv").read_bytes() == b"a,b\n"
