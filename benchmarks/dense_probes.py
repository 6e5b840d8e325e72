"""Wall time of the frozen dense probes (`segknn`, `segprobe`) per checkpoint on pasteade, on this machine.

    .venv/bin/python benchmarks/dense_probes.py      # prints the figures, writes benchmarks/results/dense_probes.json

Target (issue 28): each probe <= 3 min per ViT-tiny checkpoint on 2 cores. Measured for the study's encoder shape
(`random:rils_vit_tiny_patch8@32`, run at 128 px: a 16 x 16 patch grid) and for the reference ViT-S/14 at 224 px
(the same grid); speed does not depend on the weights. The figures are the probes' own mIoU too, as a sanity check
(the random floor and the reference), not results: those come from records.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from rils_bench.envinfo import describe_cpu
from rils_bench.eval.features import ExtractOptions
from rils_bench.eval.segknn import run_segknn
from rils_bench.eval.segprobe import run_segprobe
from rils_bench.fileio import atomic_write
from rils_bench.precision import resolve

OUT = Path(__file__).with_name("results") / "dense_probes.json"
ENCODERS = {"random:rils_vit_tiny_patch8@32": 128, "reference:dinov2-s14": 224}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    options = ExtractOptions(batch_size=args.batch_size, progress=False)
    auto = resolve("auto", "cpu")
    result = {
        "machine": f"{describe_cpu()}, torch threads {torch.get_num_threads()}, load average "
        f"{os.getloadavg()[0]:.1f} at start",
        "auto_resolves_to": f"{auto.name} ({auto.reason})",
        "torch": torch.__version__,
        "probes": {},
    }
    for spec, size in ENCODERS.items():
        for task, run in (("segknn", run_segknn), ("segprobe", run_segprobe)):
            start = time.perf_counter()
            record = run(ckpt=spec, image_size=size, write=False, options=options, log=lambda _: None)
            result["probes"][f"{task} {spec} @{size}px"] = {
                "seconds": round(time.perf_counter() - start, 1),
                "mIoU": round(record["metrics"]["mIoU"], 2),
                "mIoU_std": round(record["metrics"]["mIoU_std"], 2),
                "setting": record["setting"],
            }
            print(task, spec, result["probes"][f"{task} {spec} @{size}px"], flush=True)
    print(json.dumps(result, indent=1))
    with atomic_write(OUT) as f:
        f.write((json.dumps(result, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
