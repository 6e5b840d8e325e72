"""The precision setting: what `auto` resolves to, fp32 loss regions under autocast, and the CPU autocast wrapper."""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from rils_bench import precision
from rils_bench.amp import CPUAutocastOptimWrapper, apply_precision, optim_wrapper_for
from rils_bench.errors import UserError
from rils_bench.methods import build_method
from rils_bench.methods.losses import ITCLoss, LanguageSpaceMIMLoss
from rils_bench.models.text import tokenize
from rils_bench.train.runner import finalize_precision

MODEL = "rils_vit_test_patch8"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),  # AMD EPYC (Zen 4) and Cooper Lake
        ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "bf16"),  # Sapphire Rapids without the avx512_bf16 flag
        ({"avx2", "avx512f"}, "fp32"),  # Skylake-SP: AVX-512 but no bf16 arithmetic
        ({"avx2", "fma"}, "fp32"),  # AVX2-only EPYC: bf16 ~100x slower than fp32 there
        (set(), "fp32"),
    ],
)
def test_auto_on_a_cpu_follows_its_bf16_flags(flags, expected):
    resolved = precision.resolve("auto", "cpu", flags=frozenset(flags))
    assert resolved.name == expected
    assert resolved.autocast == (expected != "fp32")
    assert ("has native bf16" in resolved.reason) == (expected == "bf16")


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_a_gpu_prefers_bf16_then_fp16(bf16, expected):
    resolved = precision.resolve("auto", "cuda:1", flags=frozenset(), cuda_bf16=bf16)
    assert (resolved.name, resolved.device_type) == (expected, "cuda")


def test_an_explicit_precision_is_kept_and_an_unknown_one_refused():
    for name in ("fp32", "bf16", "fp16"):
        assert precision.resolve(name, "cpu", flags=frozenset()).name == name
    with pytest.raises(UserError, match="unknown precision 'half'"):
        precision.resolve("half", "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()
    assert precision.cpuinfo_field("model name", cpuinfo) == "Xeon"  # the first processor's, for benchmark records


def test_the_optimizer_wrapper_follows_the_precision():
    cpu_bf16 = precision.Precision("bf16", "cpu", "")
    assert optim_wrapper_for(cpu_bf16) == {"type": "CPUAutocastOptimWrapper", "dtype": "bfloat16"}
    assert optim_wrapper_for(precision.Precision("fp16", "cuda", "")) == {"type": "AmpOptimWrapper", "dtype": "float16"}
    wrapper = {"type": "AmpOptimWrapper", "dtype": "bfloat16", "optimizer": {"type": "AdamW"}}
    apply_precision(wrapper, precision.Precision("fp32", "cuda", ""))
    assert wrapper == {"type": "OptimWrapper", "optimizer": {"type": "AdamW"}}  # no dtype left for OptimWrapper


def test_pretraining_resolves_its_precision_into_the_config():
    cfg = Config(dict(precision="bf16", optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="AdamW"))))
    finalize_precision(cfg, "cpu")
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype, cfg.resolved_precision) == (
        "CPUAutocastOptimWrapper",
        "bfloat16",
        "bf16",
    )
    cfg.precision = "fp32"
    finalize_precision(cfg, "cpu")
    assert cfg.optim_wrapper.type == "OptimWrapper" and "dtype" not in cfg.optim_wrapper


def test_float32_region_switches_autocast_off_and_casts_its_inputs():
    seen = {}

    @precision.float32_region
    def product(a, b, *, scale):
        seen.update(a=a.dtype, scale=scale.dtype, autocast=torch.is_autocast_enabled("cpu"))
        return a @ b * scale

    a, b, scale = torch.randn(4, 8), torch.randn(8, 3), torch.tensor(2.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = product(a.bfloat16(), b, scale=scale.bfloat16())
        assert torch.is_autocast_enabled("cpu")  # restored after the region
    assert seen == {"a": torch.float32, "scale": torch.float32, "autocast": False}
    assert out.dtype == torch.float32
    assert torch.equal(out, a.bfloat16().float() @ b * scale.bfloat16().float())  # fp32 math on the cast inputs
    assert torch.equal(product(a, b, scale=scale), a @ b * scale)  # outside autocast: untouched


def test_loss_modules_compute_in_fp32_under_autocast():
    """Given bf16 inputs under autocast, each loss equals the fp32 loss of the same (upcast) inputs, bit for bit:
    a bf16 softmax at temperature 0.04 would not."""
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    protos = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=-1)
    mask, keep = torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 1, 0, 1]]), torch.tensor([1.0, 1.0])
    args = [t.bfloat16() for t in (student, teacher, protos)]
    mim = LanguageSpaceMIMLoss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = mim(*args, mask, keep)["loss_mim"]
    plain = mim(*[t.float() for t in args], mask, keep)["loss_mim"]
    assert under.dtype == torch.float32 and torch.equal(under, plain)

    image, text = protos.bfloat16(), protos.flip(0).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = ITCLoss()(image, text, torch.tensor(50.0))["loss_itc"]
    assert torch.equal(under, ITCLoss()(image.float(), text.float(), torch.tensor(50.0))["loss_itc"])


def test_rils_loss_under_bf16_autocast_is_within_1e_2_of_fp32_and_its_terms_are_fp32():
    torch.manual_seed(0)
    method = build_method("rils", MODEL).eval()
    size, patches = method.encoder.config["img_size"], method.encoder.visual.num_patches
    images = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(1))
    tokens = tokenize([f"a photo of shape {i}" for i in range(8)], method.encoder.config["context_length"])
    noise = torch.rand(8, patches, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fp32 = method(images, tokens, mask_noise=noise)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = method(images, tokens, mask_noise=noise)
    for name in ("loss", "loss_itc", "loss_mim"):
        assert bf16[name].dtype == torch.float32, name
    assert abs(float(bf16["loss"]) - float(fp32["loss"])) < 1e-2
    assert float(bf16["loss"]) != float(fp32["loss"])  # autocast did run the towers in bf16


def _train(wrapper_cls, steps, state=None, start=0, **kwargs):
    """A small model trained by `wrapper_cls` through mmengine's update_params, accumulating 2 steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 2))
    wrapper = wrapper_cls(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2), accumulative_counts=2, **kwargs)
    if state is not None:
        model.load_state_dict(state["model"])
        wrapper.load_state_dict(state["wrapper"])
    wrapper.initialize_count_status(model, start, 6)
    data = torch.randn(6, 4, 6, generator=torch.Generator().manual_seed(3))
    for step in range(start, steps):
        with wrapper.optim_context(model):
            loss = model(data[step]).pow(2).mean()
        wrapper.update_params(loss)
    return model, wrapper


def test_cpu_wrapper_in_fp32_steps_accumulates_and_resumes_exactly_like_optim_wrapper():
    reference, _ = _train(OptimWrapper, 6)
    ours, _ = _train(CPUAutocastOptimWrapper, 6, dtype="float32")
    for a, b in zip(reference.parameters(), ours.parameters(), strict=True):
        assert torch.equal(a, b)
    half, wrapper = _train(CPUAutocastOptimWrapper, 4, dtype="float32")  # a checkpoint after 2 optimizer steps
    state = {"model": copy.deepcopy(half.state_dict()), "wrapper": copy.deepcopy(wrapper.state_dict())}
    resumed, _ = _train(CPUAutocastOptimWrapper, 6, state=state, start=4, dtype="float32")
    assert not torch.equal(half[0].weight, reference[0].weight)  # the steps after the checkpoint did change it
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cpu_wrapper_in_bf16_autocasts_the_forward_and_keeps_fp32_weights():
    model, wrapper = _train(CPUAutocastOptimWrapper, 2, dtype="bfloat16")
    with wrapper.optim_context(model):
        assert model(torch.randn(3, 6)).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(s["exp_avg"].dtype == torch.float32 for s in wrapper.optimizer.state.values())
    with pytest.raises(ValueError, match="dtype must be one of"):
        CPUAutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), dtype="half")
