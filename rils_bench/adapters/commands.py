"""The `rils-bench convert` and `rils-bench dense` subcommands (hooked into `rils_bench.cli` by `add_commands`)."""

from __future__ import annotations

import argparse
from typing import Any

from rils_bench.errors import UserError
from rils_bench.precision import PRECISIONS


def _cmd_convert(args: argparse.Namespace) -> int:
    from rils_bench.adapters.convert import convert_checkpoint

    report = convert_checkpoint(args.ckpt, to=args.to, out=args.out, force=args.force)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def parse_cfg_options(items: list[str] | None) -> dict[str, Any]:
    """`["a.b=1", "c=x,y"]` -> `{"a.b": 1, "c": ["x", "y"]}` with mmengine's `DictAction` value parsing."""
    from mmengine.config import DictAction

    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--cfg-options expects KEY=VALUE, got {item!r}")
        options[key] = DictAction._parse_iterable(value)
    return options


def _cmd_dense(args: argparse.Namespace) -> int:
    from rils_bench import compat
    from rils_bench.adapters.finetune import run_dense

    compat.silence_known_warnings()
    run_dense(
        task=args.task,
        ckpt=args.ckpt,
        config=args.config,
        work_dir=args.work_dir,
        data_root=args.data_root,
        cfg_options=parse_cfg_options(args.cfg_options),
        launcher=args.launcher,
        max_iters=args.max_iters,
        seed=args.seed,
        precision=args.precision,
        holdout=args.holdout,
    )
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `convert` and `dense` to the CLI's subcommands."""
    convert = subparsers.add_parser(
        "convert", help="write backbone-only weights for timm, mmdet or mmseg and report every missing/unexpected key"
    )
    convert.add_argument(
        "ckpt",
        help="exported rils-bench checkpoint, random:<arch>, timm:<model>=<file>, open_clip:<model>=<file>, "
        "rils-official:<file>, or a timm / MAE state dict file",
    )
    convert.add_argument("--to", required=True, choices=("timm", "mmdet", "mmseg"), help="target library")
    convert.add_argument("--out", help="output file (default: <checkpoint>_<target>.pth beside the checkpoint)")
    convert.add_argument("--force", action="store_true", help="replace the output file if it exists")
    convert.set_defaults(func=_cmd_convert)

    dense = subparsers.add_parser(
        "dense", help="fine-tune + evaluate Mask R-CNN (coco) or UperNet (ade) from a checkpoint; writes a record"
    )
    dense.add_argument(
        "--task", required=True, choices=("coco", "ade"), help="coco: mmdet Mask R-CNN; ade: mmseg UperNet"
    )
    dense.add_argument(
        "--ckpt",
        required=True,
        help="exported rils-bench checkpoint, random:<arch>, or a checkpoint from elsewhere "
        "(timm:<model>=<file>, open_clip:<model>=<file>, rils-official:<file>, a timm / MAE state dict file)",
    )
    dense.add_argument(
        "--config", help="config file, or path under configs/ (default: the task's tiny built-in config)"
    )
    dense.add_argument("--data-root", help="dataset directory (default: $DATA_ROOT, else the prepared built-in set)")
    dense.add_argument("--work-dir", help="mmengine work dir (default: work_dirs/dense/<config>/<checkpoint>)")
    dense.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", help="override config entries, e.g. a.b=1")
    dense.add_argument(
        "--launcher", default="none", choices=("none", "pytorch", "slurm", "mpi"),
        help="distributed launcher (pytorch with torchrun --nproc_per_node=N -m rils_bench.cli dense ...)",
    )  # fmt: skip
    dense.add_argument("--max-iters", type=int, help="smoke run: train N iterations at constant lr, evaluate once")
    dense.add_argument("--seed", type=int, default=0, help="fine-tuning seed, also of a random:<arch> encoder")
    dense.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="auto (default): bf16 autocast on a GPU or a CPU with native bf16, else fp32; recorded with the result",
    )  # fmt: skip
    dense.add_argument(
        "--holdout", type=float, metavar="FRACTION",
        help="choose a recipe without val: train on the first 1-FRACTION of the train split, evaluate on the rest "
        "(the record's split is train-holdout; tables leave it out)",
    )  # fmt: skip
    dense.set_defaults(func=_cmd_dense)
