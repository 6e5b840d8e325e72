"""What bf16 costs in accuracy: evaluations from bf16 features against fp32 features, and a short RILS pre-training
in bf16 against the same run in fp32.

    .venv/bin/python benchmarks/precision.py [--ckpt PATH] [--pretrain-iters 60]
    # prints the figures, writes benchmarks/results/precision.json

1. Few-shot (k = 1, 2, 4, 8, 16; 5 seeds) and zero-shot on fashion-mnist and animal-mnist with `--precision fp32`
   and `--precision bf16`, each from an empty private feature cache. Target (issue 14): every bf16 - fp32
   difference of a mean is smaller than the seed std of the fp32 result (zero-shot has no seeds: it is compared
   against the mean few-shot seed std). Default checkpoint: the latest export under work_dirs/ (`make pretrain`).
2. The tiny RILS config pre-trained for `--pretrain-iters` steps from the same seed, once per precision, with the
   loss of every step logged: both curves and their largest gap are written.
Speed is measured elsewhere (pretrain_step.py, features.py); wall times here are for orientation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rils_bench.checkpoint import latest_export
from rils_bench.envinfo import describe_cpu
from rils_bench.eval.features import ExtractOptions
from rils_bench.eval.fewshot import run_fewshot
from rils_bench.eval.zeroshot import run_zeroshot
from rils_bench.fileio import atomic_write
from rils_bench.precision import resolve
from rils_bench.train.runner import run_pretrain

OUT = Path(__file__).with_name("results") / "precision.json"
DATASETS = ("fashion-mnist", "animal-mnist")
SHOTS = (1, 2, 4, 8, 16)
CONFIG = Path(__file__).parents[1] / "configs" / "pretrain" / "rils_vit-tiny-p8_builtin.py"


def evaluate(ckpt: str, precision: str, tmp: Path) -> dict:
    """Few-shot and zero-shot top-1 of `ckpt` in `precision`, from an empty feature cache."""
    options = ExtractOptions(cache=tmp / f"features-{precision}", progress=False, precision=precision)
    common = dict(ckpt=ckpt, options=options, write=False, log=lambda _: None)
    out, start = {}, time.perf_counter()
    for dataset in DATASETS:
        fewshot = run_fewshot(dataset=dataset, shots=SHOTS, seeds=5, **common)
        zeroshot = run_zeroshot(dataset=dataset, **common)
        out[dataset] = {
            "fewshot": {r["config"]["shots"]: [r["metrics"]["top1"], r["metrics"]["top1_std"]] for r in fewshot},
            "zeroshot": zeroshot["metrics"]["top1"],
        }
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def compare(fp32: dict, bf16: dict) -> dict:
    """Per dataset: each bf16 - fp32 difference, and whether it is within the fp32 seed std."""
    out = {}
    for dataset in DATASETS:
        a, b = fp32[dataset], bf16[dataset]
        rows = {f"{k}-shot": (b["fewshot"][k][0] - a["fewshot"][k][0], a["fewshot"][k][1]) for k in a["fewshot"]}
        mean_std = statistics.fmean(std for _, std in rows.values())
        rows["zero-shot"] = (b["zeroshot"] - a["zeroshot"], mean_std)
        out[dataset] = {
            name: {"bf16_minus_fp32": round(diff, 3), "fp32_seed_std": round(std, 3), "within": abs(diff) < std}
            for name, (diff, std) in rows.items()
        }
    return out


def loss_curve(precision: str, iters: int, tmp: Path) -> dict:
    """The per-step losses of the tiny RILS config pre-trained for `iters` steps in `precision`."""
    work_dir = tmp / f"pretrain-{precision}"
    options = {
        "train_cfg.max_iters": iters,
        "precision": precision,
        "default_hooks.logger.interval": 1,
        "log_processor.window_size": 1,  # the step's own values, not a running mean
        "default_hooks.checkpoint.interval": iters + 1,  # no mmengine checkpoints: only the curve is wanted
    }
    start = time.perf_counter()
    run_pretrain(config=CONFIG, work_dir=work_dir, cfg_options=options)
    seconds = time.perf_counter() - start
    scalars = next(work_dir.glob("*/vis_data/scalars.json"))
    logs = [json.loads(line) for line in scalars.read_text().splitlines()]
    logs = [entry for entry in logs if "itc" in entry]
    return {
        "seconds": round(seconds, 1),
        **{name: [round(entry[name], 5) for entry in logs] for name in ("loss", "itc", "mim")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="checkpoint to evaluate (default: latest export in work_dirs/)")
    parser.add_argument("--pretrain-iters", type=int, default=60)
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()
    ckpt = args.ckpt or str(latest_export(Path("work_dirs")))
    auto = resolve("auto", "cpu")
    result = {
        "machine": f"{describe_cpu()}, torch threads {torch.get_num_threads()}",
        "auto_resolves_to": f"{auto.name} ({auto.reason})",
        "torch": torch.__version__,
        "checkpoint": ckpt,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_eval:
            evals = {p: evaluate(ckpt, p, tmp) for p in ("fp32", "bf16")}
            result["evaluation"] = evals
            result["evaluation_bf16_vs_fp32"] = compare(evals["fp32"], evals["bf16"])
            for dataset, rows in result["evaluation_bf16_vs_fp32"].items():
                for name, row in rows.items():
                    verdict = "within" if row["within"] else "OUTSIDE"
                    print(f"{dataset:14s} {name:9s} bf16 - fp32 {row['bf16_minus_fp32']:+6.2f} points "
                          f"(fp32 seed std {row['fp32_seed_std']:.2f}): {verdict}")  # fmt: skip
            print(f"evaluation wall time: fp32 {evals['fp32']['seconds']} s, bf16 {evals['bf16']['seconds']} s")
        curves = {p: loss_curve(p, args.pretrain_iters, tmp) for p in ("fp32", "bf16")}
    gaps = [abs(a - b) for a, b in zip(curves["fp32"]["loss"], curves["bf16"]["loss"], strict=True)]
    result["pretrain"] = {
        "config": str(CONFIG.relative_to(CONFIG.parents[2])),
        "iters": args.pretrain_iters,
        "curves": curves,
        "max_abs_loss_gap": round(max(gaps), 4),
        "final_loss_mean_last10": {p: round(statistics.fmean(c["loss"][-10:]), 4) for p, c in curves.items()},
    }
    summary = result["pretrain"]
    print(f"pre-training {args.pretrain_iters} steps: fp32 {curves['fp32']['seconds']} s, bf16 "
          f"{curves['bf16']['seconds']} s; mean loss of the last 10 steps {summary['final_loss_mean_last10']}; "
          f"largest per-step gap {summary['max_abs_loss_gap']}")  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(OUT) as f:
        f.write((json.dumps(result, indent=1) + "\n").encode())
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
