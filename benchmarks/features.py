"""Feature-extraction throughput against a naive per-image timm loop, and few-shot wall time, on this machine.

    .venv/bin/python benchmarks/features.py      # prints the figures, writes benchmarks/results/features.json

1. images/s of `rils_bench.eval.features.compute_features` (batched, inference mode, a DataLoader) against a
   naive loop over the same images through timm's own `VisionTransformer` holding the same weights: open, transform,
   `forward_features` of a batch of one, pool. Both produce the same features (checked). Target (issue 5): >= 2x.
   Issue 14: the batched path in fp32 and in bf16 autocast (what `--precision auto` picks on a CPU with native
   bf16); target >= 1.8x fp32 there. The naive loop stays fp32.
2. Few-shot wall time for shots 1,2,4,8,16 x 5 seeds on fashion-mnist: once from an empty feature cache (features
   of the 10k val images and of the sampled train images computed), then again with every feature cached (the
   probes alone), in the precision `auto` picks.
The encoder is `random:rils_vit_tiny_patch8` (64 px, ViT-Ti/8): speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from rils_bench.envinfo import describe_cpu
from rils_bench.eval.datasets import resolve_classification
from rils_bench.eval.features import ExtractOptions, compute_features, eval_transform
from rils_bench.eval.fewshot import run_fewshot
from rils_bench.fileio import atomic_write
from rils_bench.models.pretrained import load_pretrained
from rils_bench.precision import resolve

OUT = Path(__file__).with_name("results") / "features.json"
CKPT = "random:rils_vit_tiny_patch8"
SHOTS = (1, 2, 4, 8, 16)
SEEDS = 5


def timm_twin(encoder: torch.nn.Module) -> torch.nn.Module:
    """timm's VisionTransformer with the encoder's weights (our key names are timm's)."""
    cfg = encoder.config
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=cfg["img_size"], patch_size=cfg["patch_size"], embed_dim=cfg["width"], depth=cfg["depth"],
        num_heads=cfg["heads"], mlp_ratio=cfg["mlp_ratio"], num_classes=0,
    )  # fmt: skip
    model.load_state_dict(encoder.visual.state_dict())
    return model.eval()


def naive_loop(model: torch.nn.Module, paths: list[Path], transform: Callable) -> np.ndarray:
    """The baseline: one image at a time, eager, no DataLoader; the mean of the patch tokens (our `gap`)."""
    rows = []
    with torch.no_grad():
        for path in paths:
            image = transform(Image.open(path).convert("RGB"))[None]
            rows.append(model.forward_features(image)[0, 1:].mean(0).numpy())
    return np.stack(rows)


def batched(encoder: torch.nn.Module, paths: list[Path], transform: Callable, batch_size: int, precision: str):
    """(features, seconds) of `compute_features` in `precision`, after a warm-up batch."""
    common = dict(transform=transform, progress=False, precision=precision)
    compute_features(encoder, paths[:64], batch_size=64, **common)  # warm-up
    start = time.perf_counter()
    features = compute_features(encoder, paths, batch_size=batch_size, **common)
    return features, time.perf_counter() - start


def throughput(n_batched: int, n_naive: int, batch_size: int) -> dict:
    encoder, _ = load_pretrained(CKPT)
    transform, _ = eval_transform(encoder.config["img_size"])
    paths = resolve_classification("fashion-mnist").split("val").paths
    features, batched_s = batched(encoder, paths[:n_batched], transform, batch_size, "fp32")
    bf16_features, bf16_s = batched(encoder, paths[:n_batched], transform, batch_size, "bf16")
    cosine = torch.nn.functional.cosine_similarity(torch.from_numpy(features), torch.from_numpy(bf16_features))

    model = timm_twin(encoder)
    naive_loop(model, paths[:4], transform)  # warm-up
    start = time.perf_counter()
    naive = naive_loop(model, paths[:n_naive], transform)
    naive_s = time.perf_counter() - start
    np.testing.assert_allclose(features[:n_naive], naive, rtol=1e-3, atol=1e-4)  # the same features
    return {
        "batched_images": n_batched,
        "batched_images_per_s": round(n_batched / batched_s, 1),
        "bf16_batched_images_per_s": round(n_batched / bf16_s, 1),
        "bf16_speedup_vs_fp32_batched": round(batched_s / bf16_s, 2),
        "bf16_vs_fp32_feature_cosine_min": round(float(cosine.min()), 5),
        "bf16_vs_fp32_feature_cosine_mean": round(float(cosine.mean()), 5),
        "batch_size": batch_size,
        "naive_images": n_naive,
        "naive_images_per_s": round(n_naive / naive_s, 1),
        "speedup": round((n_batched / batched_s) / (n_naive / naive_s), 2),
    }


def fewshot_times() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(ckpt=CKPT, dataset="fashion-mnist", shots=SHOTS, seeds=SEEDS, records=Path(tmp) / "records")
        quiet = dict(options=ExtractOptions(cache=Path(tmp) / "features", progress=False), log=lambda _: None)
        start = time.perf_counter()
        first = run_fewshot(**common, **quiet)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        run_fewshot(**common, **quiet)
        cached_s = time.perf_counter() - start
    return {
        "shots": list(SHOTS),
        "seeds": SEEDS,
        "empty_cache_s": round(first_s, 1),
        "cached_features_s": round(cached_s, 1),
        "top1_mean_by_shots": {r["config"]["shots"]: round(r["metrics"]["top1"], 2) for r in first},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batched", type=int, default=2048, help="images for the batched path (default 2048)")
    parser.add_argument("--naive", type=int, default=256, help="images for the naive loop (default 256)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--skip-fewshot", action="store_true")
    args = parser.parse_args()
    auto = resolve("auto", "cpu")
    result = {
        "machine": f"{describe_cpu()}, torch threads {torch.get_num_threads()}, load average "
        f"{os.getloadavg()[0]:.1f} at start",
        "auto_resolves_to": f"{auto.name} ({auto.reason})",
        "torch": torch.__version__,
        "encoder": CKPT,
        "extraction": throughput(args.batched, args.naive, args.batch_size),
    }
    if not args.skip_fewshot:
        result["fewshot"] = fewshot_times()
    print(json.dumps(result, indent=1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(OUT) as f:
        f.write((json.dumps(result, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
