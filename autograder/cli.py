"""Command line of the course's grading tools.

    python -m autograder.cli generate [ASSIGNMENT ...]   regenerate course/ from solutions/
    python -m autograder.cli run NOTEBOOK                execute a notebook, report errors and time
    python -m autograder.cli check NOTEBOOK              self-check: each graded test, passed or failed and why
    python -m autograder.cli grade [ASSIGNMENT ...]      instructor: grade all submissions (parallel, sandboxed,
                                                         resumable), feedback, grades.csv, report/
    python -m autograder.cli collect ASSIGNMENT [--zip DIR]  instructor: collect from the exchange or LMS zips
    python -m autograder.cli report                      instructor: rebuild grades.csv and report/ only

nbgrader runs with ``autograder/nbgrader_config.py``; its workspace is ``autograder/workspace`` unless
``VLM_COURSE_WORKSPACE`` says otherwise.

This module is the top layer: it parses arguments and calls the modules below it
(base -> cells, files, outcomes -> submission, sandbox, guard, executor, results, release,
gradebook -> grading, collect, selfcheck, report); nothing imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .base import SOLUTIONS, workspace


def grade_all(selected: list[str] | None = None, **options) -> Path:
    """Grade every submission in the workspace (see autograder/grading.py), then export and report."""
    from .grading import Grader, Options
    from .report import write_report
    from .sandbox import Limits

    limits = Limits(**{k: v for k, v in options.pop("limits", {}).items() if v is not None})
    grader = Grader(Options(workspace=workspace(), assignments=selected or None, limits=limits, **options))
    grader.run()
    csv = grader.export_csv()
    report = write_report(grader.root)
    print(f"grades: {csv}\nfeedback: {grader.root / 'feedback'}\nreport: {report}")
    return csv


def _grade_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    parser.add_argument("--student", action="append", dest="students", help="grade only this student (repeatable)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel kernels (default: cores)")
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "rlimits", "none"], default="auto")
    parser.add_argument("--db-url", help="gradebook URL (default sqlite in the workspace; "
                        "postgresql://... for several graders)")
    parser.add_argument("--force", action="store_true", help="grade again even submissions that did not change")
    parser.add_argument("--shard", help="I/N: grade only shard I of N of the students (SLURM job arrays)")
    parser.add_argument("--no-record", dest="record", action="store_false", help="execute only; record later")
    parser.add_argument("--cell-timeout", type=float, help="wall seconds per cell")
    parser.add_argument("--timeout", type=float, help="wall seconds per notebook")
    parser.add_argument("--memory", type=int, help="memory limit per kernel, MiB")
    parser.add_argument("--source-dir", type=Path, default=SOLUTIONS, help=argparse.SUPPRESS)


def _grade_options(args: argparse.Namespace) -> dict:
    shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else None
    return {"students": args.students, "jobs": max(1, args.jobs), "sandbox": args.sandbox, "db_url": args.db_url,
            "force": args.force, "shard": shard, "record": args.record, "source_dir": args.source_dir,
            "limits": {"cell_timeout": args.cell_timeout, "total_timeout": args.timeout,
                       "memory_bytes": args.memory * 2 ** 20 if args.memory else None}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("generate").add_argument("assignments", nargs="*")
    commands.add_parser("run").add_argument("notebook", type=Path)
    commands.add_parser("check").add_argument("notebook", type=Path)
    _grade_arguments(commands.add_parser("grade", help="grade every submission"))
    report = commands.add_parser("report", help="rebuild grades.csv and report/ from the last grading")
    report.add_argument("--db-url")
    collect = commands.add_parser("collect", help="collect submissions (exchange or LMS zip files)")
    collect.add_argument("assignment")
    collect.add_argument("--zip", type=Path,
                         help="folder of LMS downloads: notebooks, .zip, .tar(.gz), .gz; bad files reported one by one")
    args = parser.parse_args(argv)
    if args.command == "generate":
        from .release import generate_course
        generate_course(args.assignments)
        return 0
    if args.command == "run":
        from .selfcheck import run_notebook
        return run_notebook(args.notebook)
    if args.command == "check":
        from .selfcheck import check_notebook
        return check_notebook(args.notebook)
    if args.command == "report":
        from .grading import Grader, Options
        from .report import write_report
        grader = Grader(Options(workspace=workspace(), db_url=args.db_url, sandbox="none"))
        print(grader.export_csv(), write_report(grader.root))
        return 0
    if args.command == "collect":
        from .collect import collect
        collect(args.assignment, zip_folder=args.zip)
        return 0
    grade_all(args.assignments, **_grade_options(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
