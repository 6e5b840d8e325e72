"""`rils-bench pretrain` refuses, in one line with exit 2 and before anything is written: a resume file that would
run code (whatever its seal says), a work dir that already holds a run, config values mmengine would reject deep
inside the Runner, and a work dir that cannot be one. Bad rows of a table are skipped, counted and named."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid

import pytest
import torch
from pretrain_testing import tiny_options

from rils_bench.cli import main
from rils_bench.data.builtin.prepare import prepare
from rils_bench.train.checkpoints import RESUME_SEAL
from rils_bench.train.runner import run_pretrain

CONFIG = "configs/pretrain/clip_vit-tiny-p8_builtin.py"


@pytest.fixture(scope="module")
def shapes_table(tmp_path_factory):
    return prepare("shapes", root=tmp_path_factory.mktemp("data")) / "imagetext" / "train.csv"


@pytest.fixture(scope="module")
def finished_run(shapes_table, tmp_path_factory):
    """A 3-iteration run with a checkpoint at every iteration and its export."""
    work = tmp_path_factory.mktemp("finished") / "run"
    run_pretrain(config=CONFIG, work_dir=work, cfg_options=tiny_options(shapes_table, 3, **_every_iteration()))
    return work


def _every_iteration() -> dict:
    return {"default_hooks.checkpoint.interval": 1}


def _options(table, max_iters: int, **extra) -> list[str]:
    """`tiny_options` as `--cfg-options` words, with a fresh experiment name: mmengine names its logger after the
    config and the second, and two runs in one second would share a logger whose stream a test has closed."""
    words = [f"experiment_name=test-{uuid.uuid4().hex}"]
    for key, value in tiny_options(table, max_iters, **extra).items():
        if isinstance(value, dict):  # the dataset: spelled as its dotted keys
            words += [f"{key}.{k}={v}" for k, v in value.items() if k != "_delete_"]
            words.append(f"{key}.builtin=None")
        else:
            words.append(f"{key}={value}")
    return words


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(capfd, *needles: str) -> str:
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("rils-bench: error: "), err
    assert all(n in err[0] for n in needles), err[0]
    return err[0]


class _RunsCode:
    """Unpickling this runs a shell command: what a forged checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
@pytest.mark.parametrize("payload", ["runs code", "weights only, no training state"])
def test_a_forged_resume_file_with_a_recomputed_seal_runs_no_code(payload, finished_run, shapes_table, tmp_path, capfd):
    work = shutil.copytree(finished_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    forged = work / "iter_3.pth"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)} if payload == "runs code" else {"x": 1}, forged)
    # The seal is an unkeyed hash: anyone can recompute it, so it must not be what stands between a file and pickle.
    (work / f"iter_3.pth{RESUME_SEAL}").write_text(hashlib.sha256(forged.read_bytes()).hexdigest())
    (work / "last_checkpoint").write_text(str(forged))
    before = _snapshot(work)
    argv = ["pretrain", CONFIG, "--work-dir", str(work), "--resume", "--cfg-options", *_options(shapes_table, 5)]
    capfd.readouterr()
    assert main(argv) == 2
    needle = "(posix.system); loading it could run code" if payload == "runs code" else "no meta, state_dict"
    _one_error_line(capfd, f"cannot resume from {forged}", needle)
    assert not marker.exists()
    assert _snapshot(work) == before  # refused before the Runner wrote its config copy or a log


@pytest.mark.slow
def test_a_genuine_resume_reads_weights_only_and_prints_no_torch_warning(finished_run, shapes_table, tmp_path, capfd):
    work = shutil.copytree(finished_run, tmp_path / "run")
    (work / "last_checkpoint").write_text(str(work / "iter_2.pth"))
    safe_globals = torch.serialization.get_unsafe_globals_in_checkpoint(work / "iter_2.pth")
    assert "builtins.getattr" not in safe_globals  # history buffers are saved without their functions
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    argv = ["pretrain", CONFIG, "--work-dir", str(work), "--resume", "--cfg-options", *_options(shapes_table, 4)]
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert "resuming from" in out + err and "TORCH_FORCE" not in out + err
    assert (work / "iter_4.pth").is_file()


@pytest.mark.slow
def test_a_work_dir_holding_a_run_is_not_replaced_without_force(finished_run, shapes_table, tmp_path, capfd):
    work = shutil.copytree(finished_run, tmp_path / "run")
    before = _snapshot(work)
    argv = ["pretrain", CONFIG, "--work-dir", str(work), "--cfg-options", *_options(shapes_table, 3)]
    assert main(argv) == 2
    _one_error_line(capfd, "already holds a run", "iter_3.pth", "export/pretrained.pth", "--resume", "--force")
    assert _snapshot(work) == before
    assert main([*argv[:4], "--force", *argv[4:]]) == 0  # asked for: a new run over it
    assert (work / "export" / "pretrained.pth").read_bytes() != before["export/pretrained.pth"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("model.arch=bogus", "model.arch='bogus': unknown model 'bogus'"),
        ("train_dataloader.batch_size=0", "batch_size must be a positive integer, got 0"),
        ("load_from=/nonexistent/weights.pth", "load_from=/nonexistent/weights.pth: no such file"),
    ],
)
def test_config_values_the_runner_would_reject_are_one_line(option, message, shapes_table, tmp_path, capfd):
    argv = ["pretrain", CONFIG, "--work-dir", str(tmp_path / "w"), "--cfg-options", *_options(shapes_table, 3), option]
    assert main(argv) == 2
    _one_error_line(capfd, message)
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_load_from_a_file_that_is_no_checkpoint_is_called_so(shapes_table, tmp_path, capfd):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    options = [*_options(shapes_table, 3), f"load_from={text}"]
    assert main(["pretrain", CONFIG, "--work-dir", str(tmp_path / "w"), "--cfg-options", *options]) == 2
    err = _one_error_line(capfd, f"load_from={text}: not a torch checkpoint")
    assert "run code" not in err


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_a_work_dir_that_cannot_be_a_folder_is_one_line(kind, shapes_table, tmp_path, capfd):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    work = a_file if kind == "a file" else a_file / "run"
    assert main(["pretrain", CONFIG, "--work-dir", str(work), "--cfg-options", *_options(shapes_table, 3)]) == 2
    _one_error_line(capfd, "--work-dir")
    assert a_file.read_text() == "keep me"


@pytest.mark.slow
def test_table_rows_without_a_caption_are_skipped_counted_and_named(shapes_table, tmp_path, capfd):
    lines = shapes_table.read_text().splitlines()
    header, rows = lines[0], lines[1:9]
    image = rows[0].split(",")[0]
    table = tmp_path / "pairs.csv"
    bad = [image, f"{image},", f'{image},"   "']  # no caption field, an empty one, only spaces
    table.write_text("\n".join([header, *bad, *rows]) + "\n")
    for row in rows:  # the images, beside the new table
        path = shapes_table.parent / row.split(",")[0]
        (tmp_path / row.split(",")[0]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / row.split(",")[0])
    options = {
        **tiny_options(table, 3),
        "train_dataloader.sampler": dict(type="InfiniteSampler", shuffle=False),
        "custom_hooks": [dict(type="BadSampleHook", limit=0.9), dict(type="ExportCheckpointHook")],
    }
    export = run_pretrain(config=CONFIG, work_dir=tmp_path / "w", cfg_options=options)
    err = capfd.readouterr().err
    assert "skipped bad sample: no caption (row 1 of" in err
    assert "skipped bad sample: empty caption (row 2 of" in err and "empty caption (row 3 of" in err
    # 12 reads in order over 11 rows, each taking the first good row from its index on: indices 0, 1, 2 skip 3, 2
    # and 1 bad rows, and the 12th read (index 0 again) 3 more.
    assert torch.load(export, weights_only=True)["meta"]["skipped_samples"] == 9
