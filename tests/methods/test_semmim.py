"""SemMIM's parts: text-guided masking, the momentum teacher, the K-space distillation loss, text injection."""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from scipy.stats import mannwhitneyu

from rils_bench.methods import build_method
from rils_bench.methods.losses import PrototypeDistillationLoss
from rils_bench.methods.semmim import TextFusion, gumbel_topk_noise
from rils_bench.models.text import tokenize
from rils_bench.models.vit import num_visible, random_masking

MODEL = "rils_vit_test_patch8"
CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a red square"]


def _batch(method, n=4):
    size = method.encoder.config["img_size"]
    images = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    return images, tokenize(CAPTIONS[:n], method.encoder.config["context_length"])


def _masks(relevance: torch.Tensor, uniform: torch.Tensor, guided: bool) -> torch.Tensor:
    noise = gumbel_topk_noise(relevance, uniform, 0.1) if guided else uniform
    _, mask, _ = random_masking(relevance.unsqueeze(-1), 0.75, noise=noise)
    return mask  # [B, L], 1 = masked


def test_text_guided_masking_masks_exactly_the_ratio_and_prefers_relevant_patches():
    g = torch.Generator().manual_seed(0)
    batch, length = 200, 64
    relevance = torch.rand(batch, length, generator=g) * 0.4 - 0.2  # cosines of a patch with its caption
    uniform = torch.rand(batch, length, generator=g)
    guided, random = _masks(relevance, uniform, True), _masks(relevance, uniform, False)
    expected = length - num_visible(length, 0.75)
    assert (guided.sum(1) == expected).all() and (random.sum(1) == expected).all()
    top = relevance.argsort(dim=1, descending=True)[:, : length // 4]  # each image's most relevant quarter
    hits_guided, hits_random = guided.gather(1, top).sum(1), random.gather(1, top).sum(1)  # [B] out of 16
    assert mannwhitneyu(hits_guided, hits_random, alternative="greater").pvalue < 1e-10
    assert hits_guided.float().mean() > 15 and 11 < hits_random.float().mean() < 13  # random: 75 % of 16 = 12
    assert not torch.equal(guided, _masks(relevance, torch.rand(batch, length, generator=g), True))  # still random


def test_switched_off_the_masking_is_random_masking():
    torch.manual_seed(0)
    method = build_method("semmim", MODEL, text_guided_masking=False)
    uniform = torch.rand(2, method.encoder.visual.num_patches)
    assert method.masking_noise(torch.randn(2, method.encoder.visual.num_patches), uniform) is uniform


def test_the_teacher_gets_no_gradient_no_optimizer_state_and_moves_by_the_momentum_rule():
    torch.manual_seed(0)
    method = build_method("semmim", MODEL, momentum=0.9)
    images, tokens = _batch(method)
    wrapper = build_optim_wrapper(method, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-2)))
    student = method._student_parts()
    for _ in range(2):
        losses = method(images, tokens)
        wrapper.update_params(losses["loss"])
    teacher = dict(method.teacher.module.named_parameters())
    assert all(not p.requires_grad and p.grad is None for p in teacher.values())
    state = wrapper.optimizer.state
    assert state and not any(p in state for p in teacher.values())  # AdamW holds the student's moments only
    before = {k: v.clone() for k, v in teacher.items()}
    after_step = {k: v.detach().clone() for k, v in student.named_parameters()}
    assert any(not torch.equal(before[k], after_step[k]) for k in before)
    method.update_teacher()
    for name, value in teacher.items():
        assert torch.equal(value, before[name].lerp(after_step[name], 0.1)), name  # 0.9 teacher + 0.1 student
        torch.testing.assert_close(value, 0.9 * before[name] + 0.1 * after_step[name], rtol=0, atol=1e-6, msg=name)
    assert int(method.teacher.steps) == 3  # copied at the first forward, then one EMA step per forward


def test_prototype_distillation_loss_matches_the_hand_computation_and_centers():
    loss_fn = PrototypeDistillationLoss(2, teacher_temp=0.5, student_temp=1.0, center_momentum=0.9)
    teacher, student = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    targets = loss_fn.teacher_probs(teacher)
    assert torch.allclose(targets.sum(-1), torch.ones(2)) and (targets >= 0).all()
    # Row 1: p = softmax([2, 0]), log q = log_softmax([0, 1]); row 2: p = [1/2, 1/2], log q = log_softmax([2, 0]).
    p1 = 1 / (1 + math.exp(2))  # p of prototype 1 in row 1
    row1 = math.log(1 + math.e) - p1  # -(p0 * (0 - log(1+e)) + p1 * (1 - log(1+e)))
    row2 = math.log(1 + math.exp(2)) - 1  # -(1/2 (2 - lse) + 1/2 (0 - lse))
    assert loss_fn(student, teacher).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    torch.testing.assert_close(loss_fn.center, torch.tensor([0.05, 0.0]))  # 0.9 * 0 + 0.1 * mean(teacher)
    # A centered teacher: the same logits now give a flatter target on prototype 0.
    assert loss_fn.teacher_probs(teacher)[0, 0] < targets[0, 0]


def test_text_fusion_starts_as_the_identity_ignores_padding_and_then_injects_text():
    torch.manual_seed(0)
    fusion = TextFusion(16, 8, heads=2)
    image, text = torch.randn(2, 5, 16), torch.randn(2, 4, 8)
    padding = torch.tensor([[False, False, True, True], [False, True, True, True]])
    assert torch.equal(fusion(image, text, padding), image)
    torch.nn.init.normal_(fusion.attn.out_proj.weight)
    out = fusion(image, text, padding)
    assert not torch.allclose(out, image)
    changed = text.clone()
    changed[padding] = 100.0  # what stands in padded positions must not matter
    torch.testing.assert_close(fusion(image, changed, padding), out)


def test_a_step_logs_every_term_and_trains_text_guided_and_injected():
    torch.manual_seed(0)
    method = build_method("semmim", MODEL)
    images, tokens = _batch(method)
    losses = method(images, tokens)
    assert {"loss", "loss_itc", "loss_global", "loss_mim", "retrieval_acc", "logit_scale", "mask_relevance"} <= set(
        losses
    )
    total = losses["loss_itc"] + losses["loss_global"] + losses["loss_mim"]
    torch.testing.assert_close(losses["loss"], total)
    assert losses["mask_relevance"] > 0  # the masked patches are the more caption-relevant ones
    assert math.log(1024) * 0.5 < losses["loss_global"].item() < math.log(1024) * 1.5  # near uniform at init
    losses["loss"].backward()
    grads = {n for n, p in method.named_parameters() if p.grad is not None}
    assert any(n.startswith("fusion.") for n in grads) and any(n.startswith("head.") for n in grads)
    assert any(n.startswith("encoder.text.") for n in grads) and not any(n.startswith("teacher.") for n in grads)
