"""The evaluation subcommands of `rils-bench`: fewshot, linear, zeroshot, knn, retrieval, table.

Thin: each parses its flags and calls one keyword-only `run_*` function. Bad input raises `UserError` (the CLI
prints one line and exits with 2) before any feature is computed or any file written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rils_bench.precision import PRECISIONS


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch, epoch or seed count of 0 means an untrained or empty result)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `fewshot`, `linear`, `zeroshot`, `knn`, `retrieval` and `table` to the CLI's subparsers."""
    few = _eval_parser(subparsers, "fewshot", "k-shot logistic-regression probe, mean ± std over seeds", features=True)
    few.add_argument("--shots", default="1,2,4,8,16", help="comma-separated k values (default 1,2,4,8,16)")
    few.add_argument("--seeds", type=positive_int, default=5, help="number of sampling seeds, 0..N-1 (default 5)")
    few.set_defaults(func=_cmd_fewshot)

    lin = _eval_parser(subparsers, "linear", "linear probe on all of train, C chosen on 10 %% of train", features=True)
    lin.add_argument(
        "--classifier",
        choices=("logreg", "sgd"),
        default="logreg",
        help="logreg: L-BFGS logistic regression (default); sgd: SGD linear head, for ImageNet-size sets",
    )
    lin.add_argument("--epochs", type=positive_int, default=30, help="SGD head epochs (default 30)")
    lin.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the SGD head (default 0)")
    lin.set_defaults(func=_cmd_linear)

    zero = _eval_parser(subparsers, "zeroshot", "zero-shot classification with class-name prompt ensembles")
    zero.add_argument(
        "--templates",
        choices=("auto", "openai", "simple"),
        default="auto",
        help="prompt templates: the dataset's own short set or CLIP's 80 (auto, default), openai, simple",
    )
    zero.set_defaults(func=_cmd_zeroshot)

    knn = _eval_parser(subparsers, "knn", "weighted cosine kNN (DINO: k=20, T=0.07)", features=True)
    knn.add_argument("--k", type=positive_int, default=20, help="neighbours (default 20)")
    knn.add_argument("--temperature", type=float, default=0.07, help="vote weight exp(sim / T) (default 0.07)")
    knn.set_defaults(func=_cmd_knn)

    ret = _eval_parser(subparsers, "retrieval", "image->text and text->image Recall@1/5/10", dataset="retrieval")
    ret.set_defaults(func=_cmd_retrieval)

    seg_set = "built-in pasteade, or folder:PATH in the ADE20K layout (default pasteade)"
    segp = _eval_parser(
        subparsers, "segprobe", "linear segmentation head on frozen patch tokens (DINOv2's), mIoU", dataset="pasteade",
        dataset_help=seg_set,
    )  # fmt: skip
    segp.add_argument("--blocks", type=int, choices=(1, 4), default=1, help="tokens of the last block, or last 4")
    segp.add_argument("--seeds", type=positive_int, default=3, help="head seeds 0..N-1 (default 3)")
    segp.set_defaults(func=_cmd_segprobe)
    segk = _eval_parser(
        subparsers, "segknn", "dense nearest-neighbour retrieval on frozen patch tokens (Hummingbird), mIoU",
        dataset="pasteade", dataset_help=seg_set,
    )  # fmt: skip
    segk.add_argument("--k", type=positive_int, default=30, help="neighbours per patch (default 30)")
    segk.add_argument("--temperature", type=float, default=0.02, help="softmax(sim / T) weights (default 0.02)")
    segk.add_argument("--fraction", type=float, default=1.0, help="share of train in the memory bank (default 1)")
    segk.add_argument("--seeds", type=positive_int, default=1, help="memory-bank subset seeds when --fraction < 1")
    segk.set_defaults(func=_cmd_segknn)
    for dense in (segp, segk):
        dense.add_argument(
            "--image-size", type=positive_int, default=None,
            help="input side in px (position embeddings resampled; default: the encoder's own); in the record",
        )  # fmt: skip

    table = subparsers.add_parser("table", help="build results/*.md, *.csv, fewshot.png and README.md from records")
    table.add_argument(
        "--records", type=Path, default=None, help="records folder (default $RILS_BENCH_RECORDS or results/records)"
    )
    table.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results)")
    table.set_defaults(func=_cmd_table)


def _eval_parser(
    subparsers: argparse._SubParsersAction,
    name: str,
    help_text: str,
    *,
    features: bool = False,
    dataset: str = "",
    dataset_help: str = "",
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "--ckpt",
        default=None,
        help="an exported rils-bench checkpoint, random:<arch>, open_clip:<model>=<file>, timm:<model>=<file>, or a "
        "timm / MAE ViT state dict file (default: the most recent export under work_dirs/)",
    )
    if dataset:
        parser.add_argument(
            "--dataset", default=dataset, help=dataset_help or f"built-in name or csv:PATH (default {dataset})"
        )
    else:
        parser.add_argument(
            "--dataset",
            default=None,
            help="a built-in set (fashion-mnist, ...) or imagefolder:PATH (default: every built-in classification set)",
        )
    if features:
        parser.add_argument(
            "--feature",
            choices=("gap", "cls", "embed"),
            default=None,
            help="gap: mean of the patch tokens; cls: the class token; embed: the projected image embedding "
            "(default: what the checkpoint's authors probe: gap for rils-bench, cls for DINOv2/DeiT, embed for CLIP)",
        )
    parser.add_argument("--arch", default=None, help="registered size to use for a timm state dict (default: inferred)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, help="feature extraction batch size (default 256)"
    )
    parser.add_argument(
        "--workers", type=non_negative_int, default=None, help="data loader workers (default: by device)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="feature extraction precision (default auto: bf16 on a GPU or a CPU with native bf16, else fp32; "
        "`rils-bench env` says what auto picks here); recorded with the result",
    )
    parser.add_argument(
        "--records", type=Path, default=None, help="records folder (default $RILS_BENCH_RECORDS or results/records)"
    )
    return parser


def _common(args: argparse.Namespace, dataset: str) -> dict[str, Any]:
    from rils_bench.eval.features import ExtractOptions  # imported when a command runs: keeps `--help` fast
    from rils_bench.fileio import check_output_dir
    from rils_bench.report.record import records_dir

    check_output_dir(args.records or records_dir(), "--records")  # before the extraction, not after it

    options = ExtractOptions(
        batch_size=args.batch_size, num_workers=args.workers, device=args.device, precision=args.precision
    )
    return {
        "ckpt": _checkpoint(args),
        "dataset": dataset,
        "arch": args.arch,
        "options": options,
        "records": args.records,
    }


def _checkpoint(args: argparse.Namespace) -> str:
    """`--ckpt`, or the most recent export under work_dirs/ (said once, on stderr)."""
    if args.ckpt is None:
        from rils_bench.checkpoint import latest_export
        from rils_bench.eval.metrics import log_stderr

        args.ckpt = str(latest_export(Path("work_dirs")))
        log_stderr(f"no --ckpt: using the most recent export, {args.ckpt}")
    return args.ckpt


def _datasets(args: argparse.Namespace) -> list[str]:
    """`--dataset`, or every built-in classification set."""
    if args.dataset is not None:
        return [args.dataset]
    from rils_bench.eval.datasets import DEFAULT_CLASSIFICATION_SETS

    return list(DEFAULT_CLASSIFICATION_SETS)


def _report(records: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from rils_bench.report.record import records_dir

    print(f"wrote {len(records)} record(s) under {args.records or records_dir()}")


def _cmd_fewshot(args: argparse.Namespace) -> int:
    from rils_bench.eval.fewshot import format_fewshot, parse_shots, run_fewshot

    shots = parse_shots(args.shots)
    for dataset in _datasets(args):
        records = run_fewshot(shots=shots, seeds=args.seeds, feature=args.feature, **_common(args, dataset))
        print(f"{dataset}:\n{format_fewshot(records)}")
        _report(records, args)
    return 0


def _cmd_linear(args: argparse.Namespace) -> int:
    from rils_bench.eval.linear import run_linear

    for dataset in _datasets(args):
        record = run_linear(
            feature=args.feature,
            classifier=args.classifier,
            epochs=args.epochs,
            seed=args.seed,
            **_common(args, dataset),
        )
        top1 = record["metrics"]["top1"]
        feature = record["config"]["feature"]
        print(f"linear ({args.classifier}, {feature}) top-1 on {record['dataset']} val: {top1:.2f}%")
        _report([record], args)
    return 0


def _cmd_zeroshot(args: argparse.Namespace) -> int:
    from rils_bench.eval.zeroshot import run_zeroshot

    for dataset in _datasets(args):
        record = run_zeroshot(templates=args.templates, **_common(args, dataset))
        metrics = ", ".join(f"{k} {v:.2f}%" for k, v in record["metrics"].items())
        print(f"zero-shot on {record['dataset']} val ({record['hyperparameters']['templates']} templates): {metrics}")
        _report([record], args)
    return 0


def _cmd_knn(args: argparse.Namespace) -> int:
    from rils_bench.eval.knn import run_knn

    for dataset in _datasets(args):
        record = run_knn(feature=args.feature, k=args.k, temperature=args.temperature, **_common(args, dataset))
        metrics = ", ".join(f"{k} {v:.2f}%" for k, v in record["metrics"].items())
        feature = record["config"]["feature"]
        print(f"kNN (k={args.k}, T={args.temperature:g}, {feature}) on {record['dataset']} val: {metrics}")
        _report([record], args)
    return 0


def _cmd_retrieval(args: argparse.Namespace) -> int:
    from rils_bench.eval.retrieval import run_retrieval

    records = run_retrieval(**_common(args, args.dataset))
    for record in records:
        print(
            f"{record['dataset']} ({record['config']['n_pairs']} pairs): "
            + ", ".join(f"{k} {v:.1f}" for k, v in record["metrics"].items())
        )
    _report(records, args)
    return 0


def _cmd_segprobe(args: argparse.Namespace) -> int:
    from rils_bench.eval.segprobe import run_segprobe

    common = _common(args, args.dataset)
    record = run_segprobe(image_size=args.image_size, blocks=args.blocks, seeds=args.seeds, **common)
    _print_seg(record)
    _report([record], args)
    return 0


def _cmd_segknn(args: argparse.Namespace) -> int:
    from rils_bench.eval.segknn import run_segknn

    common = _common(args, args.dataset)
    record = run_segknn(
        image_size=args.image_size, k=args.k, temperature=args.temperature, fraction=args.fraction,
        seeds=args.seeds, **common,
    )  # fmt: skip
    _print_seg(record)
    _report([record], args)
    return 0


def _print_seg(record: dict[str, Any]) -> None:
    m = record["metrics"]
    print(
        f"{record['task']} ({record['setting']}) on {record['dataset']} val: "
        f"mIoU {m['mIoU']:.2f} ± {m['mIoU_std']:.2f}, mAcc {m['mAcc']:.2f}, aAcc {m['aAcc']:.2f}"
    )


def _cmd_table(args: argparse.Namespace) -> int:
    from rils_bench.fileio import check_output_dir
    from rils_bench.report.tables import build_tables

    check_output_dir(args.out, "--out")
    for path in build_tables(records=args.records, out=args.out):
        print(path)
    return 0
