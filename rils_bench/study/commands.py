"""`rils-bench study CONFIG`: the comparison study, stage by stage (thin; the work is in `rils_bench.study.stages`)."""

from __future__ import annotations

import argparse
import time

from rils_bench.study.plan import DEFAULT_STAGES, STAGES


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "study",
        help="pre-train every method of a study config at one budget, evaluate them and the floors, build tables",
        description="Resumable: every pre-training run and evaluation already recorded is skipped.",
    )
    cmd.add_argument("config", help="a study config, e.g. configs/study/default.py")
    cmd.add_argument(
        "--stages",
        default=",".join(DEFAULT_STAGES),
        help=f"comma-separated, from {', '.join(STAGES)} (default {','.join(DEFAULT_STAGES)}; dense is separate)",
    )
    cmd.add_argument("--dense", action="store_true", help="add the dense stage (coco + ade fine-tuning per checkpoint)")
    cmd.add_argument("--quick", action="store_true", help="the config's `quick` overrides: every stage, smallest size")
    cmd.add_argument("--work-dir", help="pre-training work dirs go here (default: the config's, outside the repo)")
    cmd.add_argument("--results", help="records, run files and tables go here (default: the config's, results/)")
    cmd.add_argument("--force", action="store_true", help="redo the chosen stages' work even where it is recorded")
    cmd.set_defaults(func=_cmd_study)


def _cmd_study(args: argparse.Namespace) -> int:
    from rils_bench.fileio import check_output_dir
    from rils_bench.study import stages
    from rils_bench.study.plan import load_study, parse_stages

    chosen = parse_stages(args.stages + (",dense" if args.dense else ""))
    study = load_study(args.config, quick=args.quick, work_dir=args.work_dir, results=args.results)
    check_output_dir(study.results, "--results")
    check_output_dir(study.work_dir, "--work-dir")
    command = f"rils-bench study {args.config}" + (" --quick" if args.quick else "")
    stages.note_study(study, command)
    started = time.monotonic()
    for stage in chosen:
        stages.say(f"stage {stage} ({study.name}: {len(study.runs)} runs, results in {study.results})")
        if stage == "tables":
            from rils_bench.report.tables import build_tables

            build_tables(records=study.records, out=study.results)
            stages.say(f"tables: {study.results / 'README.md'}")
        else:
            getattr(stages, f"{stage}_stage")(study, force=args.force)
    stages.say(f"done in {time.monotonic() - started:.0f} s")
    return 0
