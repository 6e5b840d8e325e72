"""`load_pretrained`: exported checkpoints, `random:<arch>`, timm ViT state dicts, and what is refused."""

from __future__ import annotations

import pytest
import timm
import torch
from eval_helpers import make_checkpoint

from rils_bench.checkpoint import CheckpointError
from rils_bench.fileio import sha256_of
from rils_bench.models.pretrained import load_pretrained, timm_vit_shape


def timm_vit(width: int, heads: int, seed: int = 0):
    torch.manual_seed(seed)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=width, depth=2, num_heads=heads, num_classes=10
    ).eval()


def test_exported_checkpoint(tmp_path):
    path = make_checkpoint(tmp_path / "m.pt", method="mae", steps=7)
    encoder, info = load_pretrained(path)
    assert (info.kind, info.method, info.arch, info.steps) == ("rils-bench", "mae", "rils_vit_test_patch8", 7)
    assert info.sha256 == sha256_of(path) and encoder.text is None and not encoder.training


def test_random_is_seeded():
    a, info = load_pretrained("random:rils_vit_test_patch8", seed=3)
    b, _ = load_pretrained("random:rils_vit_test_patch8", seed=3)
    assert info.kind == "random" and info.sha256 is None and info.seed == 3
    assert torch.equal(a.visual.blocks[0].attn.qkv.weight, b.visual.blocks[0].attn.qkv.weight)


def test_random_at_another_input_size_has_that_patch_grid():
    encoder, info = load_pretrained("random:rils_vit_test_patch8@16")  # the test size is 32 px, 4 x 4 patches
    assert info.arch == "rils_vit_test_patch8" and info.meta["model_config"]["img_size"] == 16
    assert encoder.visual.pos_embed.shape[1] == 1 + 2 * 2  # class token + a 2 x 2 grid
    assert encoder.forward_features(torch.zeros(1, 3, 16, 16)).shape[1] == 1 + 4
    same, _ = load_pretrained("random:rils_vit_test_patch8")  # the same draw: only the grid-sized buffer differs
    assert torch.equal(encoder.visual.blocks[0].attn.qkv.weight, same.visual.blocks[0].attn.qkv.weight)
    for bad in ("@12", "@0", "@x", "@"):
        with pytest.raises(CheckpointError, match="multiple of the patch"):
            load_pretrained(f"random:rils_vit_test_patch8{bad}")


def test_timm_state_dict_reproduces_timm_features(tmp_path):
    model = timm_vit(width=64, heads=1)
    torch.save({"model": model.state_dict()}, tmp_path / "timm.pth")  # wrapped, head included: both handled
    encoder, info = load_pretrained(tmp_path / "timm.pth")
    assert (info.kind, info.method, info.arch) == ("timm", "timm", "vit_w64_d2_p8_32px")
    assert encoder.text is None and encoder.config["embed_dim"] is None
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder.forward_features(images), model.forward_features(images))


def test_timm_heads_come_from_arch_when_given(tmp_path):
    model = timm_vit(width=32, heads=2)  # the registered test size; width // 64 would guess 1 head
    torch.save(model.state_dict(), tmp_path / "timm.pth")
    assert timm_vit_shape(model.state_dict())["heads"] == 1
    images = torch.randn(2, 3, 32, 32)
    encoder, info = load_pretrained(tmp_path / "timm.pth", arch="rils_vit_test_patch8")
    guessed, _ = load_pretrained(tmp_path / "timm.pth")
    with torch.no_grad():
        expected = model.forward_features(images)
        torch.testing.assert_close(encoder.forward_features(images), expected)
        assert not torch.allclose(guessed.forward_features(images), expected)
    assert info.arch == "rils_vit_test_patch8" and encoder.text is None


def test_refused_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(
        CheckpointError, match="not a tensor-only torch file .*; expected a rils-bench checkpoint or a timm"
    ):
        load_pretrained(tmp_path / "junk.pt")
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="neither a rils-bench checkpoint nor a timm ViT"):
        load_pretrained(tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_pretrained("random:vit_giant")
    torch.save(timm_vit(64, 1).state_dict(), tmp_path / "timm.pth")
    with pytest.raises(CheckpointError, match="do not match rils_vit_test_patch8"):
        load_pretrained(tmp_path / "timm.pth", arch="rils_vit_test_patch8")
