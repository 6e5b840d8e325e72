"""Shared fixtures of the evaluation tests: the `shapes` set prepared once, a tiny RILS checkpoint, private caches.

Every test runs with `RILS_BENCH_DATA` pointing at the session's prepared data, and `RILS_BENCH_FEATURES` /
`RILS_BENCH_RECORDS` at empty per-test folders, so nothing outside pytest's tmp folders is read or written.
"""

from __future__ import annotations

import pytest
from eval_helpers import make_checkpoint

from rils_bench.data.builtin import prepare


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-data")
    prepare.prepare("shapes", root=root)
    return root


@pytest.fixture(autouse=True)
def private_dirs(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("RILS_BENCH_DATA", str(data_root))
    monkeypatch.setenv("RILS_BENCH_FEATURES", str(tmp_path / "features"))
    monkeypatch.setenv("RILS_BENCH_RECORDS", str(tmp_path / "records"))
    return tmp_path


@pytest.fixture(scope="session")
def rils_ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "rils.pt")
