"""Pre-training through mmengine's Runner: every method from its config, resume, export, schedule."""

import os
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from pretrain_testing import tiny_options

from rils_bench.checkpoint import load_checkpoint
from rils_bench.data.builtin.prepare import prepare
from rils_bench.errors import UserError
from rils_bench.models.pretrained import load_pretrained
from rils_bench.precision import resolve
from rils_bench.train.checkpoints import RESUME_SEAL
from rils_bench.train.runner import finalize_schedule, load_config, run_pretrain

CONFIGS = "configs/pretrain"
METHOD_CONFIGS = {
    "rils": "rils_vit-tiny-p8_builtin.py",
    "clip": "clip_vit-tiny-p8_builtin.py",
    "mae": "mae_vit-tiny-p8_builtin.py",
    "mae_clip": "mae-clip_vit-tiny-p8_builtin.py",
    "semmim": "semmim_vit-tiny-p8_builtin.py",
}


@pytest.fixture(scope="session")
def shapes_table(tmp_path_factory):
    root = prepare("shapes", root=tmp_path_factory.mktemp("data"))
    return root / "imagetext" / "train.csv"


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_every_method_trains_from_its_config_and_exports(method, shapes_table, tmp_path):
    export = run_pretrain(
        config=f"{CONFIGS}/{METHOD_CONFIGS[method]}", work_dir=tmp_path, cfg_options=tiny_options(shapes_table, 3)
    )
    raw = torch.load(export, map_location="cpu", weights_only=True)  # tensor-only, as promised
    meta = raw["meta"]
    assert meta["method"] == method and meta["steps"] == 3 and meta["seed"] == 0
    assert meta["model_config"]["name"] == "rils_vit_test_patch8"
    assert meta["git_sha"] and "train_cfg" in meta["config"]
    assert meta["precision"] == resolve("auto", "cpu").name  # the configs' default, resolved on this machine
    assert any(k.startswith("encoder.visual.blocks.0.") for k in raw["state_dict"])
    assert all(torch.isfinite(v).all() for v in raw["state_dict"].values())

    encoder, info = load_pretrained(export)
    assert info.method == method and info.steps == 3 and len(info.sha256) == 64
    images = torch.randn(2, 3, 32, 32)
    weights = {k.removeprefix("encoder."): v for k, v in load_checkpoint(export)["state_dict"].items()}
    assert torch.equal(encoder.visual.blocks[0].attn.qkv.weight, weights["visual.blocks.0.attn.qkv.weight"])
    assert encoder.forward_features(images).shape == (2, 1 + 16, 32)


class _Kill(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rils", "semmim"])  # semmim: its momentum teacher and centers resume too
def test_resume_after_a_kill_equals_an_uninterrupted_run(method, shapes_table, tmp_path):
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(force=True)
    class KillAfter(Hook):  # runs after the checkpoint hook has saved iteration 3
        priority = "LOWEST"

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 3:
                raise _Kill

    config = f"{CONFIGS}/{METHOD_CONFIGS[method]}"
    opts = tiny_options(shapes_table, 6, **{"default_hooks.checkpoint.interval": 3})
    straight = run_pretrain(config=config, work_dir=tmp_path / "straight", cfg_options=opts)

    killed_opts = {**opts, "custom_hooks": [*Config.fromfile(config).custom_hooks, dict(type="KillAfter")]}
    with pytest.raises(_Kill):
        run_pretrain(config=config, work_dir=tmp_path / "resumed", cfg_options=killed_opts)
    assert not (tmp_path / "resumed" / "export").exists()
    resumed = run_pretrain(config=config, work_dir=tmp_path / "resumed", cfg_options=opts, resume=True)

    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert b["meta"]["steps"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], rtol=0, atol=0, msg=key)


def test_schedule_is_derived_from_max_iters():
    cfg = load_config(f"{CONFIGS}/{METHOD_CONFIGS['rils']}", cfg_options={"train_cfg.max_iters": 1000})
    warm, decay = cfg.param_scheduler
    assert (warm.begin, warm.end) == (0, 50)  # warmup_ratio 0.05
    assert (decay.begin, decay.end, decay.T_max) == (50, 1000, 950)

    cfg.train_cfg.max_iters = 2
    with pytest.raises(Exception, match="no iterations after"):
        finalize_schedule(cfg)


def test_weight_decay_spares_norms_biases_tokens_and_logit_scale(tmp_path):
    from mmengine.optim import build_optim_wrapper

    from rils_bench.train.model import PretrainModel

    cfg = Config.fromfile(f"{CONFIGS}/{METHOD_CONFIGS['rils']}")
    model = PretrainModel(method="rils", arch="rils_vit_test_patch8")
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g["weight_decay"] for g in wrapper.optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    for name, param in named.items():
        no_decay = param.ndim < 2 or any(k in name for k in ("cls_token", "mask_token", "positional_embedding"))
        assert (decay[id(param)] == 0.0) == no_decay, name
    assert (
        decay[id(named["method.encoder.visual.blocks.0.attn.qkv.weight"])] == cfg.optim_wrapper.optimizer.weight_decay
    )


def test_img_size_overrides_the_size_of_the_arch():
    from rils_bench.train.model import PretrainModel

    model = PretrainModel(method="clip", arch="rils_vit_test_patch8", img_size=16)
    assert model.encoder.config["img_size"] == 16 and model.encoder.visual.pos_embed.shape[1] == 1 + 2 * 2
    assert PretrainModel(method="clip", arch="rils_vit_test_patch8").encoder.config["img_size"] == 32


@pytest.mark.parametrize("config", sorted(p.name for p in Path(CONFIGS).glob("*.py")))
def test_every_pretrain_config_resolves_to_a_known_method_and_size(config):
    from rils_bench.methods import METHODS
    from rils_bench.models import list_models

    cfg = load_config(f"{CONFIGS}/{config}")
    assert cfg.model.method in METHODS and cfg.model.arch in list_models()
    warm, decay = cfg.param_scheduler
    assert 2 <= warm.end == decay.begin < decay.end == cfg.train_cfg.max_iters
    if "laion20m" in config:  # 25 epochs of 20M pairs at global batch 4096, derived once in the base
        assert cfg.train_cfg.max_iters == 20_000_000 * 25 // 4096
        assert cfg.train_dataloader.dataset.type == "ImageTextShards"


def test_train_transform_resizes_the_whole_image_or_crops_part_of_it():
    from PIL import Image
    from torchvision.transforms import functional as TF

    from rils_bench.train.data import train_transform

    image = Image.new("RGB", (28, 28))
    image.paste((255, 0, 0), (0, 0, 7, 28))  # a red stripe on the left edge
    whole = train_transform(64, crop_scale=None)(image)
    assert whole.dtype == torch.uint8 and whole.shape == (3, 64, 64)
    torch.testing.assert_close(whole, TF.pil_to_tensor(image.resize((64, 64), Image.BICUBIC)), atol=1, rtol=0)

    torch.manual_seed(0)
    flipped = [train_transform(64, crop_scale=None, hflip=True)(image) for _ in range(16)]
    left_red = {bool(x[0, 32, 0] > 200) for x in flipped}
    assert left_red == {True, False}  # both orientations occur, nothing else changes
    assert all(torch.equal(x, whole) or torch.equal(x, whole.flip(-1)) for x in flipped)

    torch.manual_seed(0)
    crops = [train_transform(64, crop_scale=(0.2, 0.3))(image) for _ in range(8)]
    assert all(x.shape == (3, 64, 64) and not torch.equal(x, whole) for x in crops)


def test_per_rank_batch_is_derived_from_the_global_batch_and_the_actual_world_size(monkeypatch):
    laion = f"{CONFIGS}/rils_vit-base-p16_laion20m.py"
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert load_config(laion).train_dataloader.batch_size == 4096  # one process does the whole step
    for world, per_rank in [("64", 64), ("8", 512)]:
        monkeypatch.setenv("WORLD_SIZE", world)
        assert load_config(laion, launcher="pytorch").train_dataloader.batch_size == per_rank
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UserError, match="does not split evenly over 3"):
        load_config(laion, launcher="pytorch")
    monkeypatch.setenv("WORLD_SIZE", "8")
    with pytest.raises(UserError, match="disagree at 8 processes"):
        load_config(laion, launcher="pytorch", cfg_options={"train_dataloader.batch_size": 64})
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(UserError, match="WORLD_SIZE is not set"):
        load_config(laion, launcher="pytorch")


@pytest.mark.slow
def test_a_minilm_config_trains_a_locked_tower_and_exports_a_small_checkpoint(shapes_table, tmp_path):
    options = tiny_options(shapes_table, 3)
    export = run_pretrain(
        config=f"{CONFIGS}/rils_vit-tiny-p8_builtin-minilm.py", work_dir=tmp_path, cfg_options=options
    )
    meta = torch.load(export, map_location="cpu", weights_only=True)["meta"]
    assert meta["model_config"]["text_tower"] == "hf" and len(meta["model_config"]["hf_weights_sha256"]) == 64
    assert export.stat().st_size < 5_000_000  # MiniLM's 91 MB are named by sha256, not copied
    encoder, info = load_pretrained(export)
    assert info.method == "rils" and encoder.tokenize(["a red circle"]).shape == (1, encoder.config["context_length"])


@pytest.mark.slow
def test_a_laion_config_pretrains_from_webdataset_shards(shapes_table, tmp_path):
    """The paper-scale config's own data path (ImageTextShards, sampler=None, global_batch) at the test size."""
    shards = sorted(str(p) for p in (shapes_table.parent / "shards").glob("train-*.tar"))
    options = {
        "model.arch": "rils_vit_test_patch8",
        "train_dataloader.dataset.urls": shards,
        "train_dataloader.dataset.num_samples": 40,
        "train_dataloader.dataset.image_size": 32,
        "train_dataloader.dataset.shuffle_buffer": 8,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "global_batch": 4,
        # The config's AmpOptimWrapper is for GPUs (it refuses CPU).
        "optim_wrapper": dict(type="OptimWrapper", _delete_=True, optimizer=dict(type="AdamW", lr=1e-4)),
        "train_cfg.max_iters": 12,  # more than one nominal epoch (40 / 4 = 10): the stream restarts
        "default_hooks.logger.interval": 1,
    }
    export = run_pretrain(config=f"{CONFIGS}/rils_vit-base-p16_laion20m.py", work_dir=tmp_path, cfg_options=options)
    meta = torch.load(export, map_location="cpu", weights_only=True)["meta"]
    assert meta["steps"] == 12 and meta["method"] == "rils"


def test_shards_without_a_sample_count_are_refused_in_one_line(shapes_table):
    from rils_bench.train.data import ImageTextShards

    dataset = ImageTextShards(urls=str(shapes_table.parent / "shards" / "train-000000.tar"))
    with pytest.raises(UserError, match="needs num_samples="):
        len(dataset)


def test_a_header_only_table_is_refused_at_once(tmp_path):
    from rils_bench.cli import main

    table = tmp_path / "pairs.csv"
    table.write_text("filepath,caption\n")
    options = [f"train_dataloader.dataset.table={table}", "train_dataloader.dataset.builtin=None"]
    argv = ["pretrain", f"{CONFIGS}/clip_vit-tiny-p8_builtin.py", "--work-dir", str(tmp_path / "w")]
    assert main([*argv, "--cfg-options", *options]) == 2


class _RunsCode:
    """Unpickling this runs a shell command: what a crafted checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_checkpoint(path, marker):
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, path)
    return path


@pytest.mark.slow
def test_load_from_a_crafted_pickle_runs_nothing_and_is_refused(shapes_table, tmp_path):
    marker = tmp_path / "pwned"
    crafted = _crafted_checkpoint(tmp_path / "weights.pth", marker)
    options = tiny_options(shapes_table, 3, load_from=str(crafted))
    with pytest.raises(UserError, match="loading it could run code"):
        run_pretrain(config=f"{CONFIGS}/clip_vit-tiny-p8_builtin.py", work_dir=tmp_path / "run", cfg_options=options)
    assert not marker.exists()


@pytest.mark.slow
def test_resume_unpickles_only_checkpoints_this_runner_wrote(shapes_table, tmp_path):
    config, work = f"{CONFIGS}/clip_vit-tiny-p8_builtin.py", tmp_path / "run"
    run_pretrain(
        config=config,
        work_dir=work,
        cfg_options=tiny_options(shapes_table, 3, **{"default_hooks.checkpoint.interval": 1}),
    )
    (work / "iter_3.pth").write_bytes((work / "iter_2.pth").read_bytes())  # content no longer what was sealed
    with pytest.raises(UserError, match="sha256 differs from its seal"):
        run_pretrain(config=config, work_dir=work, resume=True, cfg_options=tiny_options(shapes_table, 5))

    marker = tmp_path / "pwned"
    for name in ("iter_3.pth", "iter_3.pth" + RESUME_SEAL):
        (work / name).unlink()
    _crafted_checkpoint(work / "iter_4.pth", marker)  # dropped into the work dir, named like mmengine's
    (work / "last_checkpoint").write_text(str(work / "iter_4.pth"))
    with pytest.raises(UserError, match="no .rils-bench.sha256 seal"):
        run_pretrain(config=config, work_dir=work, resume=True, cfg_options=tiny_options(shapes_table, 5))
    (work / "last_checkpoint").write_text(str(_crafted_checkpoint(tmp_path / "iter_4.pth", marker)))  # outside
    with pytest.raises(UserError, match="inside the work dir"):
        run_pretrain(config=config, work_dir=work, resume=True, cfg_options=tiny_options(shapes_table, 5))
    assert not marker.exists()


@pytest.mark.slow
def test_resume_on_an_empty_work_dir_is_refused_unless_auto(shapes_table, tmp_path):
    config = f"{CONFIGS}/clip_vit-tiny-p8_builtin.py"
    with pytest.raises(UserError, match="no checkpoint to resume from"):
        run_pretrain(config=config, work_dir=tmp_path / "a", resume=True, cfg_options=tiny_options(shapes_table, 3))
    export = run_pretrain(
        config=config, work_dir=tmp_path / "b", resume="auto", cfg_options=tiny_options(shapes_table, 3)
    )
    assert export.is_file()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("train_cfg.max_iters=abc", "max_iters must be a positive integer"),
        ("model.method=simclr", "unknown method 'simclr'"),
    ],
)
def test_a_bad_config_value_is_one_line_and_exit_2(option, message, tmp_path, capsys):
    from rils_bench.cli import main

    argv = ["pretrain", f"{CONFIGS}/clip_vit-tiny-p8_builtin.py", "--work-dir", str(tmp_path), "--cfg-options", option]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
