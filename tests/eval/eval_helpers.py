"""Helpers of the evaluation tests: a tiny exported checkpoint and the CLI contract for the eval subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rils_bench.checkpoint import save_checkpoint
from rils_bench.errors import UserError
from rils_bench.eval.commands import add_commands
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
    """`rils-bench <argv>` for the evaluation subcommands, with the CLI's contract: UserError -> one line, exit 2."""
    parser = argparse.ArgumentParser(prog="rils-bench")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"rils-bench: error: {err}", file=sys.stderr)
        return 2
