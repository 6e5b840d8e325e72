"""Helpers of the evaluation tests: a tiny exported checkpoint and the CLI contract for the eval subcommands."""

from __future__ import annotations

from pathlib import Path

import torch

from rils_bench.checkpoint import save_checkpoint
from rils_bench.cli import main
from rils_bench.methods import build_method

MODEL = "rils_vit_test_patch8"


def make_checkpoint(path: Path, method: str = "rils", seed: int = 0, steps: int = 0) -> Path:
    """Export a freshly initialised `method` at the test size, as pre-training would."""
    torch.manual_seed(seed)
    model = build_method(method, MODEL)
    meta = {"method": method, "model_config": model.encoder.config, "steps": steps, "seed": seed}
    save_checkpoint(path, model.state_dict(), meta)
    return path


def run_cli(argv: list[str]) -> int:
    """`rils-bench <argv>`: the console script's own entry point, so its exit-code contract is what is tested."""
    return main(argv)
