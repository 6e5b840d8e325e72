"""Every method at the test size: one forward + backward, the keys it returns, and where its gradients go."""

import pytest
import torch

from rils_bench.methods import CLIP, MAE, MAECLIP, METHODS, RILS, build_method
from rils_bench.methods.mae import patchify, pixel_reconstruction_loss
from rils_bench.models import tokenize

DEVICE = torch.device("cpu")
MODEL = "rils_vit_test_patch8"  # 32 px, 4 x 4 patches, width 32
CAPTIONS = ["a photo of a cat", "a red car on a road", "two dogs", "a bowl of soup"]
LOGS = {"retrieval_acc", "logit_scale"}
KEYS = {
    "rils": {"loss", "loss_itc", "loss_mim"} | LOGS,
    "clip": {"loss", "loss_itc"} | LOGS,
    "mae": {"loss", "loss_mim"},
    "mae_clip": {"loss", "loss_itc", "loss_mim"} | LOGS,
    "semmim": {"loss", "loss_itc", "loss_global", "loss_mim", "mask_relevance"} | LOGS,
}
# Parameters that must receive gradient from the total loss of one step.
TRAINED = {
    "rils": ["encoder.visual.blocks.0.attn.qkv.weight", "encoder.visual.cls_token", "encoder.image_projection.weight"]
    + ["encoder.text.text_projection", "encoder.logit_scale", "decoder.pred.weight", "decoder.mask_token"],
    "clip": ["encoder.visual.patch_embed.proj.weight", "encoder.image_projection.weight"]
    + ["encoder.text.token_embedding.weight", "encoder.logit_scale"],
    "mae": [
        "encoder.visual.blocks.1.mlp.fc2.weight",
        "decoder.embed.weight",
        "decoder.mask_token",
        "decoder.pred.bias",
    ],
    "mae_clip": ["encoder.visual.blocks.0.attn.qkv.weight", "encoder.text.text_projection", "encoder.logit_scale"]
    + ["decoder.pred.weight", "decoder.mask_token"],
    "semmim": ["encoder.visual.blocks.0.attn.qkv.weight", "encoder.visual.cls_token", "encoder.text.text_projection"]
    + ["encoder.text.token_embedding.weight", "encoder.logit_scale", "decoder.pred.weight", "decoder.mask_token"]
    + ["head.prototypes", "head.mlp.fc1.weight", "fusion.attn.out_proj.weight"],
}


def batch(size: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(size, 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(DEVICE)
    return images, tokenize(CAPTIONS[:size], 16).to(DEVICE)


def build(method: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    # Every method takes rank and world size, so a trainer can build them all the same way.
    return build_method(method, MODEL, **{"rank": 0, "world_size": 1, **kwargs}).to(DEVICE)


def retrieving_batch(model: RILS) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch in which at least one image retrieves its own caption, so that the RILS masked loss is on.

    At initialisation retrieval is chance (each of 2 images hits with probability ~1/2), so a few seeds suffice.
    """
    for seed in range(50):
        images, tokens = batch(seed=seed)
        with torch.no_grad():
            if model(images, tokens)["retrieval_acc"] > 0:
                return images, tokens
    raise AssertionError("no seed gave a retrieval hit")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_step_keys_finite_and_gradients(method):
    model = build(method)
    images, tokens = retrieving_batch(model) if method == "rils" else batch()
    out = model(images, tokens)
    assert set(out) == KEYS[method]
    assert all(torch.isfinite(v) and v.dim() == 0 for v in out.values())
    assert all(not out[k].requires_grad for k in LOGS & set(out))
    out["loss"].backward()
    params = dict(model.named_parameters())
    for name in TRAINED[method]:
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name


def test_totals():
    images, tokens = batch()
    out = build("rils")(images, tokens)
    torch.testing.assert_close(out["loss"], out["loss_itc"] + 0.5 * out["loss_mim"])
    out = build("mae_clip", mim_weight=0.25)(images, tokens)
    torch.testing.assert_close(out["loss"], out["loss_itc"] + 0.25 * out["loss_mim"])
    out = build("clip")(images, tokens)
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def rils_pieces(model: RILS, images: torch.Tensor, tokens: torch.Tensor):
    latent, mask, ids_restore = model.forward_encoder(images)
    pred = model.forward_decoder(latent, ids_restore)
    target = model.forward_target(images)
    text_emb = model.encoder.encode_text(tokens, normalize=True)
    return pred, target, text_emb, mask


def test_rils_masked_loss_does_not_reach_the_teacher_pass():
    model = build("rils")
    images, tokens = retrieving_batch(model)
    pred, target, text_emb, mask = rils_pieces(model, images, tokens)
    out = model.forward_loss(pred, target, text_emb, mask)
    assert out["loss_mim"] > 0
    grad_pred, grad_target = torch.autograd.grad(out["loss_mim"], [pred, target], allow_unused=True)
    assert grad_target is None
    assert grad_pred.abs().sum() > 0
    # Only masked patches are reconstructed: the visible ones get no gradient.
    assert grad_pred[~mask.bool()].abs().sum() == 0 and grad_pred[mask.bool()].abs().sum() > 0
    # ... while the contrastive loss does train the teacher pass (it gives the image embedding).
    (grad_target,) = torch.autograd.grad(out["loss_itc"], [target])
    assert grad_target.abs().sum() > 0


@pytest.mark.parametrize("detach_prototypes", [True, False])
def test_rils_text_tower_gets_masked_loss_gradient_only_without_detach(detach_prototypes):
    model = build("rils", detach_prototypes=detach_prototypes)
    images, tokens = retrieving_batch(model)
    out = model(images, tokens)
    assert out["loss_mim"] > 0
    out["loss_mim"].backward()
    text_grads = [p.grad for p in model.encoder.text.parameters()]
    if detach_prototypes:
        assert all(g is None for g in text_grads)
    else:
        assert model.encoder.text.text_projection.grad.abs().sum() > 0
    assert model.decoder.pred.weight.grad.abs().sum() > 0  # the student is trained either way


def test_rils_encoder_runs_twice_with_shared_weights():
    model = build("rils")
    calls = []
    hook = model.encoder.visual.blocks[0].register_forward_hook(lambda m, i, o: calls.append(o.shape[1]))
    model(*batch())
    hook.remove()
    assert calls == [1 + 4, 1 + 16]  # masked pass (cls + 25 % of 16 patches), then the whole image
    assert not any("ema" in name or "teacher" in name for name, _ in model.named_parameters())


def test_rils_decoder_is_one_block_of_encoder_width_predicting_features():
    model = build("rils")
    assert len(model.decoder.blocks) == 1
    assert isinstance(model.decoder.embed, torch.nn.Identity)
    assert model.decoder.pred.in_features == model.decoder.pred.out_features == 32
    assert model.encoder.image_projection.bias is None


def test_mae_clip_embeds_the_visible_tokens():
    model = build("mae_clip")
    images, tokens = batch()
    calls = []
    hook = model.encoder.visual.blocks[0].register_forward_hook(lambda m, i, o: calls.append(o.shape[1]))
    model(images, tokens)
    hook.remove()
    assert calls == [1 + 4]  # one masked pass, no unmasked one


def test_mae_is_image_only_and_ignores_text():
    model = build("mae")
    assert model.encoder.text is None and model.encoder.config["embed_dim"] is None
    images, _ = batch()
    torch.manual_seed(1)
    a = model(images)["loss"]
    torch.manual_seed(1)
    b = model(images, torch.zeros(2, 16, dtype=torch.long))["loss"]
    torch.testing.assert_close(a, b)


def test_decoder_sizes_come_from_the_config():
    assert len(build("mae").decoder.blocks) == 1  # test size: decoder_depth 1
    torch.manual_seed(0)
    model = MAE("rils_vit_tiny_patch8")
    assert (len(model.decoder.blocks), model.decoder.pred.in_features, model.decoder.pred.out_features) == (4, 128, 192)


def test_methods_need_a_text_tower_where_they_use_one():
    for cls in (RILS, CLIP, MAECLIP):
        with pytest.raises(ValueError, match="text tower"):
            cls({"name": MODEL, "embed_dim": None})


def test_patchify_layout():
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    patches = patchify(images, 2)  # 2 x 3 patches of 2 x 2 pixels x 3 channels
    assert patches.shape == (2, 6, 12)
    # Patch 4 is row 1, column 1; its first entry is pixel (2, 2), channel 0, then channel 1 of that pixel.
    assert patches[1, 4, 0] == images[1, 0, 2, 2] and patches[1, 4, 1] == images[1, 1, 2, 2]
    assert patches[1, 4, 3] == images[1, 0, 2, 3]  # next pixel in the row, channel 0


def test_pixel_loss_counts_masked_patches_only_with_per_patch_normalisation():
    images = torch.randn(2, 3, 8, 8)
    target = patchify(images, 4)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    pred = target.clone()
    pred[mask == 0] += 100.0  # wrong on visible patches: must not count
    assert pixel_reconstruction_loss(images, pred, mask, 4).item() == pytest.approx(0.0, abs=1e-10)
    pred[0, 0] += 1.0  # error of 1 on every value of one of 3 masked patches
    assert pixel_reconstruction_loss(images, pred, mask, 4).item() == pytest.approx(1 / 3, rel=1e-5)
    raw = patchify(images, 4)
    assert pixel_reconstruction_loss(images, raw, mask, 4, norm_pix=False).item() == 0.0


def test_image_text_methods_share_one_contrastive_loss_on_the_same_encoder():
    # RILS's ITC uses the unmasked pass, so it equals CLIP's; MAE+CLIP's uses the visible tokens, so it equals
    # CLIP's only when nothing is masked.
    images, tokens = batch(size=4)
    clip, rils, mae_clip = build("clip"), build("rils"), build("mae_clip", mask_ratio=0.0)
    rils.encoder.load_state_dict(clip.encoder.state_dict())
    mae_clip.encoder.load_state_dict(clip.encoder.state_dict())
    expected = clip(images, tokens)["loss_itc"]
    torch.testing.assert_close(rils(images, tokens)["loss_itc"], expected)
    torch.testing.assert_close(mae_clip(images, tokens)["loss_itc"], expected, atol=1e-5, rtol=1e-5)
    masked = build("mae_clip", mask_ratio=0.75)
    masked.encoder.load_state_dict(clip.encoder.state_dict())
    assert not torch.allclose(masked(images, tokens)["loss_itc"], expected)


def test_rils_masked_loss_compares_prediction_with_the_unmasked_pass():
    from rils_bench.methods.losses import LanguageSpaceMIMLoss

    model = build("rils")
    images, tokens = retrieving_batch(model)
    pred, target, text_emb, mask = rils_pieces(model, images, tokens)
    out = model.forward_loss(pred, target, text_emb, mask)
    image_emb = model.encoder.encode_image(images, normalize=True)
    hit = (image_emb @ text_emb.T).argmax(dim=-1).eq(torch.arange(2, device=DEVICE)).float()
    assert out["retrieval_acc"].item() == hit.mean().item()
    project = model.encoder.project
    expected = LanguageSpaceMIMLoss()(project(pred), project(target), text_emb, mask, hit)["loss_mim"]
    torch.testing.assert_close(out["loss_mim"], expected)
