"""Step time of RILS and CLIP with the scratch CLIP text tower vs the locked MiniLM tower, cached or not.

    .venv/bin/python benchmarks/text_tower.py   # prints a table, writes benchmarks/results/text_tower.json

One training step (forward + backward + AdamW) of ViT-tiny/8 at batch 64 on real captions of the built-in pairs
(`rils-bench data prepare imagetext minilm` first). The MiniLM tower is measured twice: `uncached` runs its forward
on every step; `cached` reads the pooled output of captions seen before (`HFTextTower.pooled_frozen`), which is
what every step after the first pass over the caption set does. Run on an otherwise idle machine.
"""

from __future__ import annotations

import csv
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from rils_bench.data.builtin.prepare import prepare
from rils_bench.fileio import atomic_write
from rils_bench.methods import build_method
from rils_bench.models import get_model_config

OUT = Path(__file__).with_name("results") / "text_tower.json"
ARCH, BATCH, STEPS = "rils_vit_tiny_patch8", 64, 6
TOWERS = {
    "scratch": {},
    "minilm_uncached": {"text_tower": "hf", "hf_model": "minilm"},
    "minilm_cached": {"text_tower": "hf", "hf_model": "minilm"},
}


def captions(n: int) -> list[str]:
    with open(prepare("imagetext") / "train.csv", newline="", encoding="utf-8") as f:
        return [row["caption"] for _, row in zip(range(n), csv.DictReader(f), strict=False)]


def step_time(method_name: str, tower: str, texts: list[str]) -> float:
    torch.manual_seed(0)
    method = build_method(method_name, get_model_config(ARCH, **TOWERS[tower])).train()
    if tower == "minilm_uncached":
        method.encoder.text.cache_captions = False
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    images = torch.randn(BATCH, 3, 64, 64)
    batches = [method.encoder.tokenize(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    if tower == "minilm_cached":  # every caption seen once, as after the first pass over the data
        for tokens in batches:
            method.encoder.encode_text(tokens)
    times = []
    for i, tokens in enumerate(batches):
        start = time.perf_counter()
        loss = method(images, tokens)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_flags() -> str:
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return "avx512_bf16" if "avx512_bf16" in flags else ("avx2" if "avx2" in flags else "neither avx512_bf16 nor avx2")


def main() -> None:
    texts = captions(BATCH * (STEPS + 2))
    rows = []
    for method_name in ("rils", "clip"):
        for tower in TOWERS:
            seconds = step_time(method_name, tower, texts)
            rows.append({"method": method_name, "text_tower": tower, "step_s": seconds, "img_per_s": BATCH / seconds})
            print(f"{method_name:5s} {tower:16s} step {seconds:.3f} s  {BATCH / seconds:6.1f} img/s", flush=True)
    by = {(r["method"], r["text_tower"]): r["step_s"] for r in rows}
    summary = {
        m: {
            "minilm_cached_vs_scratch": by[m, "minilm_cached"] / by[m, "scratch"],
            "cache_saves_s_per_step": by[m, "minilm_uncached"] - by[m, "minilm_cached"],
        }
        for m in ("rils", "clip")
    }
    for m, s in summary.items():
        print(f"{m}: cached MiniLM step = {s['minilm_cached_vs_scratch']:.2f}x the scratch tower's; the cache saves "
              f"{s['cache_saves_s_per_step']:.3f} s per step")  # fmt: skip
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {cpu_flags()}",
        "torch": torch.__version__,
        "arch": ARCH,
        "batch": BATCH,
        "steps_timed": STEPS,
        "rows": rows,
        "summary": summary,
    }
    OUT.parent.mkdir(exist_ok=True)
    with atomic_write(OUT) as f:
        f.write((json.dumps(result, indent=1) + "\n").encode())
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
