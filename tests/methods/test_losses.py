"""Golden values for the loss terms, computed by hand on tiny tensors, and their gradient routing."""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from rils_bench.methods.losses import ITCLoss, LanguageSpaceMIMLoss, contrastive_labels, gather_features

DEVICE = torch.device("cpu")


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_itc_golden_two_pairs_with_one_miss():
    # v = images, z = captions (unit vectors), s = 2.
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]], device=DEVICE)
    z = torch.tensor([[1.0, 0.0], [0.8, -0.6]], device=DEVICE)
    out = ITCLoss()(v, z, torch.tensor(2.0))
    # s v z^T = [[2, 1.6], [0, -1.2]];  s z v^T = [[2, 0], [1.6, -1.2]].  CE of a 2-way row with label logit a
    # and other logit b is log(1 + exp(b - a)).
    image_terms = softplus(1.6 - 2) + softplus(0 - (-1.2))
    text_terms = softplus(0 - 2) + softplus(1.6 - (-1.2))
    expected = 0.5 * (image_terms / 2 + text_terms / 2)
    assert out["loss_itc"].item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.2405646, abs=1e-7)
    # Image 0's best caption is its own (2 > 1.6); image 1's is caption 0 (0 > -1.2).
    assert out["retrieval_hit"].tolist() == [1.0, 0.0]
    assert not out["retrieval_hit"].requires_grad
    assert torch.equal(out["all_text_emb"], z)


def test_itc_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(5, 8, generator=g), dim=-1).to(DEVICE)
    z = F.normalize(torch.randn(5, 8, generator=g), dim=-1).to(DEVICE)
    s = torch.tensor(7.5)
    logits = s * v @ z.T
    direct = -0.5 * (logits.log_softmax(dim=1).diagonal().mean() + logits.log_softmax(dim=0).diagonal().mean())
    torch.testing.assert_close(ITCLoss()(v, z, s)["loss_itc"], direct)


def test_contrastive_labels_offset_by_rank():
    assert contrastive_labels(3, rank=2, device=DEVICE).tolist() == [6, 7, 8]
    assert contrastive_labels(2, rank=0, device=DEVICE).tolist() == [0, 1]


def test_gather_is_identity_on_one_rank():
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    ga, gb = gather_features(a, b, rank=0, world_size=1)
    assert ga is a and gb is b


def kl_by_hand(teacher_logits: list[float], student_logits: list[float]) -> float:
    """KL(p || q) for p = softmax(teacher_logits), q = softmax(student_logits), in plain floats."""
    zp = sum(math.exp(a) for a in teacher_logits)
    zq = sum(math.exp(b) for b in student_logits)
    p = [math.exp(a) / zp for a in teacher_logits]
    q = [math.exp(b) / zq for b in student_logits]
    return sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))


# Prototypes are the two axes, so a unit feature (x, y) has similarities (x, y) with them.
PROTOTYPES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
# Teacher f and student g per [image, patch]; lengths differ on purpose (both are L2-normalised by the loss).
TEACHER = torch.tensor([[[1.8, 2.4], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])  # f^: (.6,.8) (1,0) | (0,1) (1,0)
STUDENT = torch.tensor([[[0.3, 0.4], [0.0, 1.0]], [[1.0, 0.0], [0.8, 0.6]]])  # g^: (.6,.8) (0,1) | (1,0) (.8,.6)
# Each patch's KL with teacher logits f^ . z / 0.04 and student logits g^ . z / 0.1:
KL_00 = kl_by_hand([0.6 / 0.04, 0.8 / 0.04], [0.6 / 0.1, 0.8 / 0.1])  # same direction, yet KL > 0: temperatures
KL_01 = kl_by_hand([1 / 0.04, 0.0], [0.0, 1 / 0.1])
KL_10 = kl_by_hand([0.0, 1 / 0.04], [1 / 0.1, 0.0])
KL_11 = kl_by_hand([1 / 0.04, 0.0], [0.8 / 0.1, 0.6 / 0.1])


def mim(mask, keep, **kwargs):
    loss = LanguageSpaceMIMLoss(**kwargs)
    return loss(STUDENT, TEACHER, PROTOTYPES, torch.tensor(mask), torch.tensor(keep))["loss_mim"].item()


def test_hand_values_are_what_we_think():
    # p = softmax(15, 20) = (s(-5), s(5)), q = softmax(6, 8) = (s(-2), s(2)) with s the logistic function.
    assert math.isclose(KL_00, 0.1001341, abs_tol=1e-7)
    assert math.isclose(KL_01, math.log1p(math.exp(10)), abs_tol=1e-6)  # p ~ one-hot, log q_0 = -log(1 + e^10)


def test_mim_golden_masked_patches_of_retrieved_images_only():
    # Image 0 retrieved, image 1 not; image 0's patch 1 is visible. Only patch (0, 0) counts.
    assert mim([[1.0, 0.0], [1.0, 1.0]], [1.0, 0.0]) == pytest.approx(KL_00 / (1 + 1e-6), rel=1e-5)


def test_mim_golden_mean_over_counted_patches():
    expected = (KL_00 + KL_01 + KL_10) / (3 + 1e-6)
    assert mim([[1.0, 1.0], [1.0, 0.0]], [1.0, 1.0]) == pytest.approx(expected, rel=1e-5)
    expected = (KL_00 + KL_01 + KL_10 + KL_11) / (4 + 1e-6)
    assert mim([[1.0, 1.0], [1.0, 1.0]], [1.0, 1.0]) == pytest.approx(expected, rel=1e-5)


def test_mim_is_zero_when_nothing_is_retrieved_or_masked():
    assert mim([[1.0, 1.0], [1.0, 1.0]], [0.0, 0.0]) == 0.0
    assert mim([[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0]) == 0.0


def test_mim_temperature_roles():
    # Teacher 0.04 and student 0.1 are not interchangeable: swapping them changes patch (0, 0)'s value.
    swapped = kl_by_hand([0.6 / 0.1, 0.8 / 0.1], [0.6 / 0.04, 0.8 / 0.04])
    assert swapped == pytest.approx(0.2373961, abs=1e-7)
    kwargs = {"teacher_temp": 0.1, "student_temp": 0.04}
    assert mim([[1.0, 0.0], [0.0, 0.0]], [1.0, 0.0], **kwargs) == pytest.approx(swapped / (1 + 1e-6), rel=1e-5)
    # Equal temperatures and equal directions: identical distributions.
    kwargs = {"teacher_temp": 0.1, "student_temp": 0.1}
    assert mim([[1.0, 0.0], [0.0, 0.0]], [1.0, 0.0], **kwargs) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("detach_prototypes", [True, False])
def test_mim_gradient_routing(detach_prototypes):
    student = STUDENT.clone().requires_grad_()
    teacher = TEACHER.clone().requires_grad_()
    prototypes = PROTOTYPES.clone().requires_grad_()
    loss = LanguageSpaceMIMLoss(detach_prototypes=detach_prototypes)(
        student, teacher, prototypes, torch.ones(2, 2), torch.ones(2)
    )["loss_mim"]
    loss.backward()
    assert teacher.grad is None  # the teacher distribution is a target
    assert student.grad is not None and student.grad.abs().sum() > 0
    if detach_prototypes:
        assert prototypes.grad is None
    else:
        assert prototypes.grad.abs().sum() > 0


_WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist, torch.nn.functional as F
    from rils_bench.methods.losses import ITCLoss
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    z = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    local = slice(2 * rank, 2 * rank + 2)
    out = ITCLoss(rank=rank, world_size=world)(v[local], z[local], torch.tensor(3.0))
    print(json.dumps({"loss": out["loss_itc"].item(), "hit": out["retrieval_hit"].tolist(),
                      "all_text_ok": bool(torch.equal(out["all_text_emb"], z))}))
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_itc_on_two_ranks_averages_to_the_one_rank_loss():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER], env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, text=True
        )
        for r in range(2)
    ]
    results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    z = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    single = ITCLoss()(v, z, torch.tensor(3.0))
    assert all(r["all_text_ok"] for r in results)  # gathered in rank order
    assert (results[0]["loss"] + results[1]["loss"]) / 2 == pytest.approx(single["loss_itc"].item(), rel=1e-5)
    assert results[0]["hit"] + results[1]["hit"] == single["retrieval_hit"].tolist()
