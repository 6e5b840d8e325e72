"""Reading a study config: one budget, every run derived from it; bad configs refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from rils_bench.errors import UserError
from rils_bench.study.plan import load_study, merge, parse_stages

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "configs/study/default.py"


def test_default_study_derives_every_run_from_one_budget():
    study = load_study(DEFAULT, root=ROOT)
    methods = {"rils", "clip", "mae", "mae_clip", "semmim"}
    assert {r.method for r in study.runs} == methods and len(study.runs) == 2 * len(methods)
    assert study.budget["steps"] == study.budget["images_seen"] // study.budget["batch_size"] == 600
    for run in study.runs:
        assert run.config.is_file() and run.work_dir.name == f"{run.method}-seed{run.seed}"
        assert run.cfg_options == {
            "model.arch": "rils_vit_tiny_patch8",
            "model.img_size": 32,  # the model is built at the size the data is resized to
            "train_dataloader.batch_size": 64,
            "train_dataloader.dataset.image_size": 32,
            "train_cfg.max_iters": 600,
            "randomness.seed": run.seed,
            "precision": "auto",
            "default_hooks.logger.interval": 10,
        }
    assert not Path(study.work_dir).is_relative_to(ROOT)  # checkpoints live outside the repo
    assert study.records == Path("results/records") and "random:rils_vit_tiny_patch8@32" in study.floors


def test_quick_replaces_only_what_it_names():
    full, quick = load_study(DEFAULT, root=ROOT), load_study(DEFAULT, quick=True, root=ROOT)
    assert quick.budget["steps"] == 3 and quick.name == "default-quick"
    assert quick.runs[0].cfg_options["default_hooks.logger.interval"] == 1  # a curve of 3 points
    assert {r.method for r in quick.runs} == {r.method for r in full.runs}  # every method, every seed
    assert len(quick.runs) == len(full.runs) and quick.floors == full.floors
    assert quick.evaluation["batch_size"] == full.evaluation["batch_size"]  # kept: quick does not name it
    assert quick.dense["tasks"] == full.dense["tasks"] and quick.dense["max_iters"] == 2
    assert quick.work_dir != full.work_dir and quick.results != full.results


def test_merge_is_deep_except_for_the_method_list():
    base = {"a": {"x": 1, "y": 2}, "methods": {"rils": "r.py", "clip": "c.py"}, "b": 1}
    assert merge(base, {"a": {"y": 3}, "methods": {"mae": "m.py"}}) == {
        "a": {"x": 1, "y": 3}, "methods": {"mae": "m.py"}, "b": 1,
    }  # fmt: skip
    assert base["a"]["y"] == 2  # the base is not modified


def write_config(tmp_path, **changes):
    text = DEFAULT.read_text()
    path = tmp_path / "study.py"
    path.write_text(text + "\n" + "\n".join(f"{k} = {v!r}" for k, v in changes.items()) + "\n")
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"images_seen": 100}, "positive multiple of batch_size"),
        ({"seeds": []}, "seeds is empty"),
        ({"methods": {"rils": "configs/pretrain/nope.py"}}, "pre-training config of 'rils'"),
        # a random floor of another size or input side than the study's encoder: refused, the right spec named
        ({"floors": ["random:rils_vit_tiny_patch8"]}, "write 'random:rils_vit_tiny_patch8@32'"),
        ({"floors": ["random:rils_vit_test_patch8@32"]}, "not the study's encoder"),
        ({"floors": ["random:rils_vit_tiny_patch8@30"]}, "multiple of the patch"),
    ],
)
def test_bad_budgets_and_missing_method_configs_are_refused(tmp_path, changes, message):
    with pytest.raises(UserError, match=message):
        load_study(write_config(tmp_path, **changes), root=ROOT)


def test_a_missing_config_and_unknown_stages_are_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_study(tmp_path / "nope.py")
    assert parse_stages("tables, pretrain") == ["pretrain", "tables"]  # always in pipeline order
    with pytest.raises(UserError, match="unknown stage"):
        parse_stages("pretrain,train")


def test_the_minilm_study_replaces_the_methods_and_keeps_the_budget():
    full, minilm = load_study(DEFAULT, root=ROOT), load_study(ROOT / "configs/study/minilm.py", root=ROOT)
    assert {r.method for r in minilm.runs} == {"rils_minilm", "clip_minilm"}
    assert minilm.budget == full.budget and minilm.floors == full.floors and minilm.results == full.results
    assert all("minilm" in r.config.name for r in minilm.runs)


@pytest.mark.parametrize("flag", ["--results", "--work-dir"])
def test_a_results_or_work_dir_that_cannot_be_a_folder_is_refused_before_any_stage(flag, tmp_path, capsys):
    from rils_bench.cli import main

    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    assert main(["study", str(DEFAULT), flag, str(a_file / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rils-bench: error: {flag}") and "is a file" in err and "\n" not in err, err
    assert a_file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
