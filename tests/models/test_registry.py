"""Contract tests over the registry: every size builds, exposes the evaluation interface with the right shapes,
and rebuilds from its saved config. Small sizes run for real; ViT-S/B/L run on the meta device (shapes only)."""

import io
import math

import pytest
import torch

from rils_bench.models import create_model, get_model_config, list_models, resolve_config, tokenize
from rils_bench.models.registry import LOGIT_SCALE_INIT, LOGIT_SCALE_MAX

DEVICE = torch.device("cpu")
REAL = {"rils_vit_test_patch8", "rils_vit_tiny_patch8"}  # cheap enough to run on the CPU
EXPECTED = {"rils_vit_test_patch8", "rils_vit_tiny_patch8", "rils_vit_small_patch16", "rils_vit_base_patch16"}
EXPECTED |= {"rils_vit_large_patch16"}


def build(name: str, **overrides):
    """Real weights on DEVICE for the small sizes; meta tensors (no memory, no compute) for the big ones."""
    device = DEVICE if name in REAL else torch.device("meta")
    with torch.device(device):
        torch.manual_seed(0)
        model = create_model(name, **overrides)
    return model.eval(), device


def test_registry_lists_the_sizes():
    assert set(list_models()) >= EXPECTED
    assert list_models("rils_vit_*_patch16") == [
        "rils_vit_base_patch16",
        "rils_vit_large_patch16",
        "rils_vit_small_patch16",
    ]


@pytest.mark.parametrize("name", list_models())
def test_interface_shapes(name):
    model, device = build(name)
    cfg = model.config
    batch, grid = 2, cfg["img_size"] // cfg["patch_size"]
    images = torch.randn(batch, 3, cfg["img_size"], cfg["img_size"], device=device)
    tokens = tokenize(["a photo of a cat", "two dogs"], cfg["context_length"]).to(device)
    with torch.no_grad():
        assert model.forward_features(images).shape == (batch, 1 + grid * grid, cfg["width"])
        layers = model.get_intermediate_layers(images, [0, cfg["depth"] - 1])
        assert [t.shape for t in layers] == [(batch, grid * grid, cfg["width"])] * 2
        assert model.encode_image(images).shape == (batch, cfg["embed_dim"])
        assert model.encode_text(tokens).shape == (batch, cfg["embed_dim"])
        latent, mask, ids_restore = model.visual.forward_encoder(images, 0.75)
    assert latent.shape == (batch, 1 + round(grid * grid / 4), cfg["width"])
    assert mask.shape == ids_restore.shape == (batch, grid * grid)


@pytest.mark.parametrize("name", sorted(REAL))
def test_normalized_embeddings_have_unit_norm(name):
    model, _ = build(name)
    cfg = model.config
    images = torch.randn(3, 3, cfg["img_size"], cfg["img_size"], device=DEVICE)
    tokens = tokenize(["a", "b c", "d e f"], cfg["context_length"]).to(DEVICE)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images, normalize=True).norm(dim=-1), torch.ones(3))
        torch.testing.assert_close(model.encode_text(tokens, normalize=True).norm(dim=-1), torch.ones(3))
        pooled = model.forward_features(images)[:, 1:].mean(dim=1)
        torch.testing.assert_close(model.encode_image(images), model.image_projection(pooled))


@pytest.mark.parametrize("name", list_models())
def test_config_is_primitive_and_rebuilds_the_same_architecture(name):
    model, _ = build(name)
    buffer = io.BytesIO()
    torch.save({"model": model.config}, buffer)
    buffer.seek(0)
    config = torch.load(buffer, weights_only=True)["model"]
    assert config == model.config and config["name"] == name
    with torch.device("meta"):
        rebuilt = create_model(**config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_rebuilt_model_with_loaded_weights_computes_the_same():
    model, _ = build("rils_vit_test_patch8")
    torch.manual_seed(1)
    rebuilt = create_model(**model.config).to(DEVICE).eval()
    images = torch.randn(2, 3, 32, 32, device=DEVICE)
    with torch.no_grad():
        assert not torch.allclose(rebuilt.encode_image(images), model.encode_image(images))
        rebuilt.load_state_dict(model.state_dict())
        torch.testing.assert_close(rebuilt.encode_image(images), model.encode_image(images))


def test_paper_sizes_have_the_known_parameter_counts():
    model, _ = build("rils_vit_base_patch16")
    # timm vit_base_patch16_224 (86,567,656) without its learned pos_embed (151,296) and head (769,000).
    assert sum(p.numel() for p in model.visual.parameters()) == 85_647_360
    # CLIP ViT-B's text tower: 512 wide, 12 layers, 8 heads, 77 tokens, 512-d projection.
    assert sum(p.numel() for p in model.text.parameters()) == 63_428_096
    assert model.text.transformer.resblocks[0].attn.num_heads == 8
    large, _ = build("rils_vit_large_patch16")
    assert (large.embed_dim, large.text.width, large.text.heads, len(large.visual.blocks)) == (768, 768, 12, 24)


def test_overrides_apply_and_unknown_keys_fail():
    model, _ = build("rils_vit_test_patch8", depth=1, embed_dim=16)
    assert len(model.visual.blocks) == 1 and model.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 16)
    with pytest.raises(TypeError, match="unknown model config keys"):
        create_model("rils_vit_test_patch8", widht=8)
    with pytest.raises(KeyError, match="unknown model"):
        create_model("rils_vit_huge_patch99")
    assert resolve_config(get_model_config("rils_vit_test_patch8", depth=1))["depth"] == 1


def test_image_only_model_has_no_text_tower():
    model, _ = build("rils_vit_test_patch8", embed_dim=None)
    assert model.text is None and model.image_projection is None
    assert not any(k.startswith("text.") or k == "logit_scale" for k in model.state_dict())
    assert model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 32)  # pooled tokens, unprojected
    with pytest.raises(RuntimeError, match="no text tower"):
        model.encode_text(torch.zeros(2, 16, dtype=torch.long))


def test_text_tokens_must_have_the_context_length():
    model, _ = build("rils_vit_test_patch8")
    with pytest.raises(ValueError, match="expected 16"):
        model.encode_text(tokenize(["a cat"], 8))


def test_text_embedding_is_taken_at_the_eot_token():
    model, _ = build("rils_vit_test_patch8")
    tokens = tokenize(["a cat on a mat"], 16)
    eot = int(tokens.argmax())
    changed = tokens.clone()
    changed[0, eot + 1 :] = 0  # padding after EOT is never seen by EOT under the causal mask
    changed[0, -1] = 5
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), model.encode_text(changed))
        edited = tokens.clone()
        edited[0, 1] = 1000  # a token before EOT changes the embedding
        assert not torch.allclose(model.encode_text(tokens), model.encode_text(edited))


def test_logit_scale_init_and_clamp():
    model, _ = build("rils_vit_test_patch8")
    torch.testing.assert_close(model.get_logit_scale(), torch.tensor(1 / 0.07))
    assert math.isclose(LOGIT_SCALE_INIT, 2.6592600, abs_tol=1e-7)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    torch.testing.assert_close(model.get_logit_scale(), torch.tensor(100.0))
    assert math.isclose(LOGIT_SCALE_MAX, 4.6051702, abs_tol=1e-7)
