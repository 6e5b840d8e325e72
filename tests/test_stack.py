"""The stack is real: compiled mmcv ops, mmdet/mmseg models from their own base configs, offline
tokenizer, timm ViT. Each test fails if an install step silently fell back to something lesser."""

import pytest
import torch
import torchvision

from rils_bench.precision import resolve


def test_mmcv_roi_align_matches_torchvision():
    from mmcv.ops import RoIAlign

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 24, 32, generator=g)
    xy1 = torch.rand(20, 2, generator=g) * torch.tensor([200.0, 150.0])
    wh = torch.rand(20, 2, generator=g) * 60 + 4
    rois = torch.cat([torch.randint(0, 2, (20, 1), generator=g).float(), xy1, xy1 + wh], dim=1)

    ours = RoIAlign(output_size=7, spatial_scale=1 / 8, sampling_ratio=2, aligned=True)(feats, rois)
    ref = torchvision.ops.roi_align(feats, rois, output_size=7, spatial_scale=1 / 8, sampling_ratio=2, aligned=True)
    assert ours.shape == (20, 8, 7, 7)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_mmcv_nms_matches_torchvision():
    from mmcv.ops import nms

    g = torch.Generator().manual_seed(1)
    xy1 = torch.rand(300, 2, generator=g) * 100
    boxes = torch.cat([xy1, xy1 + torch.rand(300, 2, generator=g) * 40 + 1], dim=1)
    scores = torch.rand(300, generator=g)

    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    ref_keep = torchvision.ops.nms(boxes, scores, iou_threshold=0.5)
    assert 0 < len(keep) < 300  # the threshold actually suppressed something
    assert torch.equal(keep.sort().values, ref_keep.sort().values)
    torch.testing.assert_close(dets[:, 4], scores[keep])


def test_env_reports_compiled_ops(capsys):
    from rils_bench.cli import main

    assert main(["env"]) == 0
    out = capsys.readouterr().out
    rows = dict(
        line.split(maxsplit=1) if " ops " not in line else ("mmcv ops", line.split()[-1]) for line in out.splitlines()
    )
    assert rows["mmcv ops"] == "compiled"
    auto = resolve("auto", "cpu")
    assert f"precision auto   {auto.name} on cpu ({auto.reason})" in out  # what auto picks here, and why
    pins = _pins()  # the versions pyproject.toml pins, read from it rather than repeated here
    for package in ("torch", "mmcv", "mmdet", "timm"):
        assert rows[package].strip() == pins[package], package


def _pins() -> dict[str, str]:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    return dict(dep.split("==") for dep in project["dependencies"])


@pytest.mark.slow
def test_mmdet_mask_rcnn_from_base_config_forwards():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.hub import get_config

    register_all_modules(init_default_scope=True)
    cfg = get_config("mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py", pretrained=False)
    model = MODELS.build(cfg.model).eval()  # init_weights not called: nothing is downloaded
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 96))
    assert [f.shape[-2:] for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(f.shape[1] == 256 for f in feats)


@pytest.mark.slow
def test_mmseg_upernet_from_base_config_forwards():
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(_mmseg_base("upernet_vit-b16_ln_mln.py"))
    cfg.model.backbone.img_size = (64, 64)
    cfg.model.pretrained = None
    # SyncBN needs a process group; a single CPU process has none.
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.norm_cfg = dict(type="BN", requires_grad=True)
    cfg.model.decode_head.num_classes = 5
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode="tensor")
    assert logits.shape == (1, 5, 16, 16)  # UperNet predicts at stride 4
    assert torch.isfinite(logits).all()


def _mmseg_base(name: str) -> str:
    from pathlib import Path

    import mmseg

    path = Path(mmseg.__file__).parent / ".mim" / "configs" / "_base_" / "models" / name
    assert path.is_file(), f"mmseg wheel no longer ships {path}"
    return str(path)


def test_open_clip_tokenizes_offline():
    import open_clip

    tokens = open_clip.tokenize(["a photo of a cat", "a bear"])
    assert tokens.shape == (2, 77)
    sot, eot = 49406, 49407
    assert (tokens[:, 0] == sot).all()
    # "a photo of a cat" is 5 BPE tokens, "a bear" 2: EOT follows them.
    assert tokens[0, 6] == eot and tokens[1, 3] == eot
    assert tokens[1, 4:].eq(0).all()


def test_timm_builds_vit_tiny():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=0).eval()
    with torch.no_grad():
        tokens = model.forward_features(torch.randn(2, 3, 64, 64))
    assert tokens.shape == (2, 1 + 16, 192)
