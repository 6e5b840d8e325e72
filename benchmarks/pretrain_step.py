"""Speed and memory of one pre-training step (forward + backward + AdamW) per method and size, on this machine.

Each measurement runs in a fresh process (peak RSS is per process). Also measures a plain eager reference of
the RILS step - the same weights and loss, but attention written out as matmul + softmax (no SDPA) in both the
image and the text towers - and checks that it gives the identical loss.

    .venv/bin/python benchmarks/pretrain_step.py   # prints a table, writes benchmarks/results/pretrain_step.json

Run it on an otherwise idle machine: two processes that each start two OpenMP threads on two cores slow each
other down far more than 2x.

Targets (issue 4): RILS step >= 1.5x the eager reference; RILS step <= 1.3x the cost of our CLIP step.
Issue 14 adds a precision column: every method in fp32 and in bf16 autocast (`rils_bench.precision.autocast`, as
pre-training runs it), the eager reference in fp32. Target on a CPU with native bf16: the bf16 RILS step >= 1.5x the
fp32 eager reference; `auto_resolves_to` says what `--precision auto` picks on the machine measured.

Two more readings explain the first target on a CPU: `rils_compiled` (the same step under `torch.compile`, whose
one-off compile time is reported apart), and the share of the RILS step spent in matrix products (torch
profiler), read against this machine's fp32 matmul rate. If products take a share g of the step, removing every
other cost - all that fusion or a better attention kernel can do - speeds the step up by at most 1 / g.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import profile

from rils_bench.fileio import atomic_write

OUT = Path(__file__).with_name("results") / "pretrain_step.json"
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
METHODS = ("rils", "clip", "mae", "mae_clip", "semmim")
CASES = [  # (method, arch, batch, precision)
    *[(m, "rils_vit_tiny_patch8", 64, p) for m in METHODS for p in ("fp32", "bf16")],
    ("rils_eager_reference", "rils_vit_tiny_patch8", 64, "fp32"),
    ("rils_compiled", "rils_vit_tiny_patch8", 64, "fp32"),
    ("rils_context24", "rils_vit_tiny_patch8", 64, "bf16"),
    *[(m, "rils_vit_base_patch16", 8, p) for m in METHODS for p in ("fp32", "bf16")],
    ("rils_eager_reference", "rils_vit_base_patch16", 8, "fp32"),
]


class EagerTextAttention(nn.Module):
    """nn.MultiheadAttention's math written out (same weights): the reference's text attention, no SDPA."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        self.mha = mha

    def forward(self, q, k, v, need_weights=False, attn_mask=None, key_padding_mask=None):
        del k, v, need_weights, key_padding_mask  # self-attention only, as open_clip's text tower uses it
        b, n, d = q.shape  # batch_first
        heads = self.mha.num_heads
        qkv = F.linear(q, self.mha.in_proj_weight, self.mha.in_proj_bias).view(b, n, 3, heads, d // heads)
        q_, k_, v_ = qkv.permute(2, 0, 3, 1, 4)  # [B, H, N, d]
        scores = q_ @ k_.transpose(-2, -1) / (d // heads) ** 0.5
        if attn_mask is not None:
            scores = scores + attn_mask
        out = (scores.softmax(-1) @ v_).transpose(1, 2).reshape(b, n, d)
        return self.mha.out_proj(out), None


def make_eager(method: nn.Module) -> nn.Module:
    """Switch every attention of `method` to plain eager math, weights untouched."""
    swaps = []
    for module in method.modules():
        if hasattr(module, "fused_attn"):  # timm Attention
            module.fused_attn = False
        swaps += [
            (module, name, child) for name, child in module.named_children() if isinstance(child, nn.MultiheadAttention)
        ]
    for module, name, child in swaps:  # after the walk: replacing while walking would revisit the new module
        setattr(module, name, EagerTextAttention(child))
    return method


def measure_one(method_name: str, arch: str, batch: int, precision: str, steps: int) -> dict:
    from rils_bench.methods import build_method
    from rils_bench.models.text import tokenize
    from rils_bench.precision import autocast, resolve

    torch.manual_seed(0)
    from rils_bench.models.registry import get_model_config

    base = "rils" if method_name.startswith("rils") else method_name
    model = get_model_config(arch)
    if method_name == "rils_context24":  # the built-in captions' 99th percentile of tokens (issue 14), not 32
        model = {**model, "context_length": 24}
    method = build_method(base, model)
    if method_name == "rils_eager_reference":
        method = make_eager(method)
    step_fn = torch.compile(method) if method_name == "rils_compiled" else method
    config = method.encoder.config
    images = torch.randn(batch, 3, config["img_size"], config["img_size"])
    tokens = tokenize([f"a photo of thing number {i}" for i in range(batch)], config["context_length"])
    noise = torch.rand(batch, method.encoder.visual.num_patches, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-4)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    resolved = resolve(precision, "cpu")

    def one_step() -> torch.Tensor:
        with autocast(resolved):
            losses = step_fn(images, tokens, mask_noise=noise)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        return losses["loss"].detach()

    times, first_loss, first_step_s = [], None, None
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        loss = one_step()
        if i == 0:
            first_loss, first_step_s = float(loss), time.perf_counter() - start
        if i >= 2:
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    extra = {}
    if method_name == "rils_compiled":
        extra["first_step_incl_compile_s"] = first_step_s
    if method_name == "rils" and precision == "fp32":
        with profile() as prof:
            one_step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        extra["matmul_share"] = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / total
    return {
        "method": method_name,
        "arch": arch,
        "batch": batch,
        "precision": precision,
        "step_s": step,
        "img_per_s": batch / step,
        "first_loss": first_loss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
        **extra,
    }


def matmul_gflops(dtype: torch.dtype = torch.float32) -> float:
    """This machine's matmul rate (2048^2) in `dtype`, the physical limit the step times are read against."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--one", nargs=4, metavar=("METHOD", "ARCH", "BATCH", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        method, arch, batch, precision = args.one
        print(json.dumps(measure_one(method, arch, int(batch), precision, args.steps)))
        return

    load_at_start = os.getloadavg()[0]
    rows = []
    for method, arch, batch, precision in CASES:
        cmd = [sys.executable, __file__, "--steps", str(args.steps), "--one", method, arch, str(batch), precision]
        row = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        )
        rows.append(row)
        print(f"{method:22s} {arch:24s} b={batch:3d} {precision}  {row['img_per_s']:7.1f} img/s  step "
              f"{row['step_s']:.3f} s  peak RSS {row['peak_rss_mb']:.0f} MB  loss {row['first_loss']:.5f}",
              flush=True)  # fmt: skip

    by = {(r["method"], r["arch"], r["precision"]): r for r in rows}
    summary = {}
    for arch in sorted({r["arch"] for r in rows}):
        rils, eager, clip = (
            by[("rils", arch, "fp32")],
            by[("rils_eager_reference", arch, "fp32")],
            by[("clip", arch, "fp32")],
        )
        rils_bf16 = by[("rils", arch, "bf16")]
        summary[arch] = {
            "bf16_rils_speedup_vs_fp32_eager_reference": eager["step_s"] / rils_bf16["step_s"],
            "bf16_rils_speedup_vs_fp32_rils": rils["step_s"] / rils_bf16["step_s"],
            "bf16_first_loss_minus_fp32": rils_bf16["first_loss"] - rils["first_loss"],
            **{
                f"bf16_speedup_{m}": by[(m, arch, "fp32")]["step_s"] / by[(m, arch, "bf16")]["step_s"]
                for m in METHODS[1:]
            },
            # Issue 15's target: a SemMIM step costs at most 1.6x a CLIP step (in each precision).
            **{
                f"semmim_cost_vs_clip_{p}": by[("semmim", arch, p)]["step_s"] / by[("clip", arch, p)]["step_s"]
                for p in ("fp32", "bf16")
            },
            "rils_speedup_vs_eager_reference": eager["step_s"] / rils["step_s"],
            "matmul_share_of_rils_step": rils["matmul_share"],
            "max_speedup_without_fewer_flops": 1 / rils["matmul_share"],
            "rils_cost_vs_clip": rils["step_s"] / clip["step_s"],
            "identical_loss": abs(rils["first_loss"] - eager["first_loss"]) <= 1e-4 * max(1.0, abs(rils["first_loss"])),
        }
        speedup, cost = summary[arch]["rils_speedup_vs_eager_reference"], summary[arch]["rils_cost_vs_clip"]
        share = rils["matmul_share"]
        print(f"{arch}: RILS {speedup:.2f}x the eager reference (target >= 1.5), {cost:.2f}x the CLIP step "
              f"(target <= 1.3), same loss: {summary[arch]['identical_loss']}; matrix products take "
              f"{share:.0%} of the step: at most {1 / share:.2f}x without fewer FLOPs")  # fmt: skip
        line = summary[arch]
        print(f"{arch}: bf16 RILS step {line['bf16_rils_speedup_vs_fp32_eager_reference']:.2f}x the fp32 eager "
              f"reference (target >= 1.5 with native bf16), {line['bf16_rils_speedup_vs_fp32_rils']:.2f}x the fp32 "
              f"RILS step; first loss bf16 - fp32 = {line['bf16_first_loss_minus_fp32']:+.4f}")  # fmt: skip
        if ("rils_context24", arch, "bf16") in by:
            summary[arch]["context24_speedup_vs_32_bf16"] = (
                rils_bf16["step_s"] / by[("rils_context24", arch, "bf16")]["step_s"]
            )
            print(f"{arch}: text context 24 instead of 32: {summary[arch]['context24_speedup_vs_32_bf16']:.3f}x (bf16)")
        if ("rils_compiled", arch, "fp32") in by:
            compiled = by[("rils_compiled", arch, "fp32")]
            summary[arch]["compiled_speedup_vs_rils"] = rils["step_s"] / compiled["step_s"]
            summary[arch]["compiled_same_loss"] = abs(compiled["first_loss"] - rils["first_loss"]) <= 1e-4
            print(f"{arch}: torch.compile {summary[arch]['compiled_speedup_vs_rils']:.2f}x the eager-mode RILS step "
                  f"(compile {compiled['first_step_incl_compile_s']:.0f} s)")  # fmt: skip
    from rils_bench.envinfo import describe_cpu
    from rils_bench.precision import resolve

    auto = resolve("auto", "cpu")
    result = {
        "machine": f"{describe_cpu()}, {torch.get_num_threads()} threads",
        "auto_resolves_to": f"{auto.name} ({auto.reason})",
        "load_average_at_start": load_at_start,
        "torch": torch.__version__,
        "fp32_matmul_gflops": matmul_gflops(),
        "bf16_matmul_gflops": matmul_gflops(torch.bfloat16),
        "steps_timed": args.steps,
        "rows": rows,
        "summary": summary,
    }
    OUT.parent.mkdir(exist_ok=True)
    with atomic_write(OUT) as f:
        f.write((json.dumps(result, indent=1) + "\n").encode())
    print(f"matmul: fp32 {result['fp32_matmul_gflops']:.0f}, bf16 {result['bf16_matmul_gflops']:.0f} GFLOP/s; "
          f"auto = {result['auto_resolves_to']}; written {OUT}")  # fmt: skip


if __name__ == "__main__":
    main()
