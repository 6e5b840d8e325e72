"""Checkpoints of other libraries, evaluated through rils-bench: the features equal the source library's own.

No weights can be downloaded here, so each source model is built with random weights by its own library, saved in
the layout its authors publish, and loaded back through `load_pretrained`.
"""

from __future__ import annotations

import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from rils_bench.cli import main
from rils_bench.eval.features import pool
from rils_bench.eval.zeroshot import text_classifier
from rils_bench.models.pretrained import load_pretrained

pytestmark = pytest.mark.slow  # builds ViT-B-sized models


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random non-zero biases / tokens, so that a dropped or mis-mapped tensor changes the features."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1 or "token" in name or "reg" in name:
                param.add_(0.05 * torch.randn_like(param))
    return model.eval()


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("vit_base_patch16_224.mae", "gap"),
        ("vit_small_patch14_dinov2", "cls"),
        ("vit_small_patch14_reg4_dinov2", "cls"),  # 4 register tokens besides the class token
        ("deit_tiny_patch16_224", "cls"),
        ("vit_base_patch16_clip_224", "cls"),  # norm_pre
    ],
)
def test_timm_models_give_timms_own_features(name, default, tmp_path):
    source = _perturbed(timm.create_model(name, pretrained=False, num_classes=0))
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    encoder, info = load_pretrained(f"timm:{name}={path}")
    assert info.kind == "timm" and info.arch == name and encoder.config["default_feature"] == default
    assert encoder.text is None and encoder.config["image_mean"] == list(source.pretrained_cfg["mean"])
    size = source.patch_embed.img_size[0]
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        tokens = source.forward_features(images)
        prefix = source.num_prefix_tokens
        torch.testing.assert_close(pool(encoder, images, "cls"), tokens[:, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(pool(encoder, images, "gap"), tokens[:, prefix:].mean(1), atol=1e-5, rtol=0)
        own = source.forward_head(tokens, pre_logits=True)
        torch.testing.assert_close(encoder.encode_image(images), own, atol=1e-5, rtol=0)


def test_maes_released_layout_loads_without_its_decoder(tmp_path):
    """MAE's `mae_pretrain_*.pth`: `{"model": encoder (timm names) + decoder_* + mask_token}`."""
    source = _perturbed(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0))
    state = dict(source.state_dict())
    state |= {"mask_token": torch.zeros(1, 1, 256), "decoder_embed.weight": torch.randn(256, 384)}
    state |= {"decoder_blocks.0.norm1.weight": torch.ones(256), "decoder_pred.bias": torch.zeros(768)}
    path = tmp_path / "mae_pretrain_vit_small.pth"
    torch.save({"model": state}, path)
    encoder, info = load_pretrained(path)
    assert info.kind == "timm"
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = source.forward_features(images)[:, 1:].mean(1)
        torch.testing.assert_close(pool(encoder, images, "gap"), expected, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    path = tmp_path_factory.mktemp("open_clip") / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


def test_open_clip_image_and_text_embeddings_are_open_clips_own(clip_file):
    model, path = clip_file
    encoder, info = load_pretrained(f"open_clip:ViT-B-32={path}")
    assert (
        info.kind == "open_clip" and encoder.config["embed_dim"] == 512 and encoder.config["default_feature"] == "embed"
    )
    images = torch.randn(2, 3, 224, 224)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    texts = ["a photo of a cat", "a diagram"]
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_image(images), model.encode_image(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            encoder.encode_text(encoder.tokenize(texts)), model.encode_text(tokenizer(texts)), atol=1e-5, rtol=0
        )
        # The class token rils-bench hands to probes is the one open_clip pools and projects.
        cls = pool(encoder, images, "cls")
        torch.testing.assert_close(cls @ model.visual.proj, model.encode_image(images), atol=1e-4, rtol=0)


def test_open_clip_zero_shot_equals_open_clips_own_classifier(clip_file):
    model, path = clip_file
    encoder, _ = load_pretrained(f"open_clip:ViT-B-32={path}")
    classnames, templates = ["cat", "dog", "car"], [lambda c: f"a photo of a {c}.", lambda c: f"a drawing of a {c}."]
    prompts = [[t(c) for t in templates] for c in classnames]
    ours = torch.from_numpy(text_classifier(encoder, prompts, device="cpu", precision="fp32"))  # [C, E]
    with torch.no_grad():
        theirs = open_clip.build_zero_shot_classifier(
            model, tokenizer=open_clip.get_tokenizer("ViT-B-32"), classnames=classnames, templates=templates,
            num_classes_per_batch=None, device="cpu", use_tqdm=False,
        ).T  # fmt: skip
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
        images = torch.randn(4, 3, 224, 224)
        image_emb = F.normalize(encoder.encode_image(images), dim=-1)
        assert torch.equal(
            (image_emb @ ours.T).argmax(1), (model.encode_image(images, normalize=True) @ theirs.T).argmax(1)
        )


def test_bad_foreign_checkpoints_are_one_line_and_exit_2(clip_file, tmp_path, capsys):
    _, path = clip_file
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    other = tmp_path / "notes.pth"
    other.write_bytes(b"not a checkpoint")
    timm_file = tmp_path / "deit.pth"
    torch.save(timm.create_model("deit_tiny_patch16_224", num_classes=0).state_dict(), timm_file)
    cases = {
        f"open_clip:ViT-B-32={truncated}": "not a readable safetensors file",
        f"timm:deit_tiny_patch16_224={other}": "notes.pth",
        f"timm:vit_from_the_future={timm_file}": "vit_from_the_future",
        f"open_clip:ViT-B-32-nope={path}": "open_clip has no model",
        "open_clip:ViT-B-32": "no hub is reachable",
        f"timm:deit_tiny_patch16_224={tmp_path / 'absent.pth'}": "not found",
    }
    for spec, message in cases.items():
        assert main(["knn", "--ckpt", spec, "--dataset", "shapes"]) == 2, spec
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (spec, err)
    assert main(["zeroshot", "--ckpt", f"timm:deit_tiny_patch16_224={timm_file}", "--dataset", "shapes"]) == 2
    assert "needs a text tower" in capsys.readouterr().err


def test_a_timm_mae_converts_into_the_dense_backbone_and_computes_the_same_tokens(tmp_path):
    from rils_bench.adapters.backbone import RILSViT
    from rils_bench.adapters.convert import convert_checkpoint
    from rils_bench.adapters.loading import load_backbone

    source = _perturbed(timm.create_model("vit_base_patch16_224.mae", pretrained=False, num_classes=0))
    path = tmp_path / "mae.pth"
    torch.save(source.state_dict(), path)
    report = convert_checkpoint(f"timm:vit_base_patch16_224.mae={path}", to="mmdet", out=tmp_path / "mmdet.pth")
    assert report.ok and not report.missing and not report.unexpected
    backbone = RILSViT(report_config(tmp_path / "mmdet.pth")).eval()
    assert load_backbone(backbone, tmp_path / "mmdet.pth").ok
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        (grid,) = backbone(images)  # [1, D, 14, 14]
        expected = source.forward_features(images)[:, 1:]  # [1, 196, D]
        torch.testing.assert_close(grid.flatten(2).transpose(1, 2), expected, atol=1e-4, rtol=0)


def report_config(path):
    return torch.load(path, weights_only=True)["meta"]["model_config"]


@pytest.mark.parametrize(
    "spec_of",
    [
        lambda path: _timm_file("vit_small_patch14_reg4_dinov2", path),  # registers, layer scale, no cls position
        lambda path: _timm_file("vit_base_patch16_clip_224", path),  # norm_pre
        lambda path: _open_clip_file("ViT-B-32", path),  # open_clip names, ln_pre, eps 1e-5, no patch bias
    ],
)
def test_timm_and_open_clip_vits_become_dense_backbones_that_compute_their_tokens(spec_of, tmp_path):
    from rils_bench.adapters.backbone import RILSViT
    from rils_bench.adapters.convert import convert_checkpoint
    from rils_bench.adapters.loading import load_backbone

    spec, tokens_of, size = spec_of(tmp_path)
    report = convert_checkpoint(spec, to="mmseg", out=tmp_path / "mmseg.pth")
    assert report.ok and not report.missing and not report.unexpected and not report.mismatched
    backbone = RILSViT(report_config(tmp_path / "mmseg.pth")).eval()
    assert load_backbone(backbone, tmp_path / "mmseg.pth").ok
    images = torch.randn(1, 3, size, size)
    with torch.no_grad():
        (grid,) = backbone(images)
        torch.testing.assert_close(grid.flatten(2).transpose(1, 2), tokens_of(images), atol=1e-4, rtol=0)


def _timm_file(name, folder):
    source = _perturbed(timm.create_model(name, pretrained=False, num_classes=0))
    torch.save(source.state_dict(), folder / "weights.pth")
    prefix = source.num_prefix_tokens
    size = source.patch_embed.img_size[0]
    return f"timm:{name}={folder / 'weights.pth'}", lambda x: source.forward_features(x)[:, prefix:], size


def _open_clip_file(name, folder):
    model = _perturbed(open_clip.create_model(name, pretrained=None))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))

    def patch_tokens(images):
        out = model.visual.forward_intermediates(
            images, indices=1, normalize_intermediates=True, output_fmt="NLC", intermediates_only=True
        )
        return out["image_intermediates"][0]

    return f"open_clip:{name}={folder / 'model.safetensors'}", patch_tokens, 224


def _authors_rils_checkpoint(path, *, with_args: bool):
    """A checkpoint in the RILS authors' layout, its parts built by timm (BEiT-style q/v biases: the key bias is 0)
    and open_clip (OpenAI's text tower with QuickGELU); returns the reference image and text functions."""
    import argparse

    from open_clip.transformer import QuickGELU, TextTransformer
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = _perturbed(VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1, num_classes=0))
    text = TextTransformer(context_length=16, width=64, heads=1, layers=2, output_dim=32, act_layer=QuickGELU).eval()
    projection = torch.randn(64, 32) / 8
    state = {}
    for key, value in vit.state_dict().items():
        if key.endswith("attn.qkv.bias"):
            q, k, v = value.clone().chunk(3)
            state[f"visual.{key.removesuffix('qkv.bias')}q_bias"] = q
            state[f"visual.{key.removesuffix('qkv.bias')}v_bias"] = v
            with torch.no_grad():
                dict(vit.named_parameters())[key][64:128] = 0  # the reference has no key bias either
        else:
            state[f"visual.{key}"] = value
    state |= {"visual.decoder_embed.weight": torch.randn(64, 64), "visual.mask_token": torch.zeros(1, 1, 64)}
    state |= {k: v for k, v in text.state_dict().items() if not k.startswith("attn_mask")}
    state |= {"image_projection": projection, "logit_scale": torch.tensor(2.6592)}
    payload = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 24}
    if with_args:
        payload["args"] = argparse.Namespace(model="RILS_VITB16", batch_size=4096)
    torch.save(payload, path)
    return (lambda images: vit.forward_features(images)[:, 1:].mean(1) @ projection), text


@pytest.mark.parametrize("with_args", [True, False])
def test_the_rils_authors_layout_gives_the_same_image_and_text_embeddings(with_args, tmp_path):
    path = tmp_path / "checkpoint_best.pt"
    image_fn, text = _authors_rils_checkpoint(path, with_args=with_args)
    spec = f"rils-official:{path}" if with_args else str(path)  # a tensor-only file is recognised by its keys
    encoder, info = load_pretrained(spec)
    assert info.kind == "rils-official" and encoder.config["text_quick_gelu"] and encoder.config["context_length"] == 16
    images = torch.randn(2, 3, 32, 32)
    tokens = encoder.tokenize(["a photo of a cat", "two dogs"])
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_image(images), image_fn(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(encoder.encode_text(tokens), text(tokens), atol=1e-5, rtol=0)


def test_an_authors_checkpoint_with_pickled_arguments_given_as_a_plain_path_names_the_spec(tmp_path, capsys):
    path = tmp_path / "checkpoint_best.pt"
    _authors_rils_checkpoint(path, with_args=True)
    assert main(["zeroshot", "--ckpt", str(path), "--dataset", "shapes"]) == 2
    assert "pass it as rils-official:PATH" in capsys.readouterr().err


def test_convert_names_a_foreign_output_beside_its_file(tmp_path):
    from rils_bench.adapters.convert import convert_checkpoint

    path = tmp_path / "deit.pth"
    torch.save(timm.create_model("deit_tiny_patch16_224", num_classes=0).state_dict(), path)
    report = convert_checkpoint(f"timm:deit_tiny_patch16_224={path}", to="mmdet")
    assert report.ok and report.out == tmp_path / "deit_mmdet.pth" and report.out.is_file()


def test_an_authors_checkpoint_converts_for_the_dense_backbones(tmp_path):
    from rils_bench.adapters.convert import convert_checkpoint

    path = tmp_path / "checkpoint_best.pt"
    _authors_rils_checkpoint(path, with_args=True)
    report = convert_checkpoint(f"rils-official:{path}", to="mmdet")
    assert report.ok and report.out == tmp_path / "checkpoint_best_mmdet.pth"
