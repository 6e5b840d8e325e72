"""The four dense configs: they parse, keep the papers' recipes, and build in mmdet / mmseg for any encoder size."""

from __future__ import annotations

import pytest
from dense_testing import ARCH

from rils_bench.adapters import dense_config
from rils_bench.models.registry import get_model_config

CONFIGS = {
    "coco": ("mmdet/mask-rcnn_rils-vit-base_coco-100e.py", "mmdet/mask-rcnn_rils-vit-tiny_pastecoco.py"),
    "ade": ("mmseg/upernet_rils-vit-base_ade20k-160k.py", "mmseg/upernet_rils-vit-tiny_pasteade.py"),
}


def _load(name: str, data_root: str = "/data/x"):
    return dense_config.load_config(dense_config.resolve_config_path("coco", name), data_root)


def test_vitdet_recipe():
    cfg = _load(CONFIGS["coco"][0])
    assert cfg.custom_imports.imports == ["rils_bench.adapters.mmdet"]
    # The encoder size comes from the checkpoint (fit_to_encoder): the config states none of it.
    assert "arch" not in cfg.model.backbone and not {"in_channels", "backbone_stride"} & set(cfg.model.neck)
    optim = cfg.optim_wrapper
    assert optim.constructor == "LayerDecayOptimWrapperConstructor" and optim.paramwise_cfg.layer_decay_rate == 0.7
    assert optim.optimizer == dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1)
    epochs = cfg.train_cfg.max_epochs * cfg.train_dataloader.dataset.times
    assert epochs == 100 and cfg.auto_scale_lr.base_batch_size == 64
    warmup, steps = cfg.param_scheduler
    assert (warmup.end, warmup.start_factor, steps.milestones, steps.end) == (250, 0.001, [22, 24], 25)
    backbone = cfg.model.backbone
    assert (backbone.img_size, backbone.window_size, backbone.use_rel_pos, backbone.drop_path_rate) == (
        1024,
        "auto",
        True,
        0.1,
    )
    assert not backbone.with_cls_token and not backbone.final_norm and backbone.out_indices == "last"
    train_ops = [t.type for t in cfg.train_dataloader.dataset.dataset.pipeline]
    assert train_ops[2:4] == ["RandomResize", "RandomCrop"]
    assert cfg.train_dataloader.dataset.dataset.pipeline[2].ratio_range == (0.1, 2.0)
    assert cfg.val_evaluator.ann_file == "/data/x/annotations/instances_val2017.json"
    assert cfg.train_dataloader.dataset.dataset.data_root == "/data/x/"


def test_mae_upernet_recipe():
    cfg = _load(CONFIGS["ade"][0])
    assert cfg.custom_imports.imports == ["rils_bench.adapters.mmseg"]
    optim = cfg.optim_wrapper
    assert optim.paramwise_cfg.layer_decay_rate == 0.65
    assert optim.optimizer == dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size * 8 == 16
    warmup, poly = cfg.param_scheduler
    assert (warmup.end, poly.type, poly.power, poly.eta_min, poly.end) == (1500, "PolyLR", 1.0, 0.0, 160000)
    assert cfg.crop_size == (512, 512) and cfg.model.test_cfg == dict(
        mode="slide", crop_size=(512, 512), stride=(341, 341)
    )
    assert cfg.model.backbone.out_indices == "uper" and cfg.model.backbone.drop_path_rate == 0.1
    assert cfg.model.neck.type == "MultiLevelNeck" and cfg.model.decode_head.num_classes == 150


@pytest.mark.parametrize("task", ["coco", "ade"])
def test_tiny_configs_use_builtin_sets_and_small_heads(task):
    base, tiny = (_load(name) for name in CONFIGS[task])
    assert tiny.dataset_name == {"coco": "pastecoco", "ade": "pasteade"}[task] and "arch" not in tiny.model.backbone
    assert tiny.optim_wrapper.type == "OptimWrapper"  # `rils-bench dense` puts the backbone alone under autocast
    # The recipe's layer decay, plus (ade) an encoder that moves little under fast-learning heads.
    decay = base.optim_wrapper.paramwise_cfg.layer_decay_rate
    assert tiny.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    assert tiny.optim_wrapper.paramwise_cfg.get("backbone_lr_mult", 1.0) == {"coco": 1.0, "ade": 0.01}[task]
    if task == "coco":
        assert tiny.model.neck.out_channels == 64 and tiny.model.train_cfg.rcnn.sampler.num == 64
    else:
        assert tiny.model.decode_head.channels == 64 and tiny.model.decode_head.norm_cfg.type == "BN"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["coco", "ade"])
@pytest.mark.parametrize("which", [0, 1])
def test_configs_build_for_any_encoder_size(task, which):
    """Every config builds its model in its own library after fitting to the unit-test encoder."""
    import importlib

    from mmengine.registry import DefaultScope

    scope = dense_config.TASKS[task].scope
    importlib.import_module(f"rils_bench.adapters.{scope}")
    registry = importlib.import_module(f"{scope}.registry").MODELS
    cfg = _load(CONFIGS[task][which])
    notes = dense_config.fit_to_encoder(cfg, task, get_model_config(ARCH))
    assert notes[0] == f"backbone: {ARCH} (width 32, patch 8) from the checkpoint"
    dense_config.apply_classes(cfg, task, ["a", "b", "c"])
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    assert model.backbone.arch == ARCH and model.backbone.width == 32
    if task == "coco":
        # patch 8 -> stride 4 is one transposed convolution, which halves the encoder's 32 channels
        assert model.neck.stages[0][1].in_channels == 16 and model.roi_head.bbox_head.num_classes == 3
    else:
        assert cfg.model.neck.scales == [2.0, 1.0, 0.5, 0.25] and model.decode_head.num_classes == 3
