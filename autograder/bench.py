"""Grading throughput: N honest submissions graded serially (--jobs 1) and in parallel (--jobs J),
and the per-submission overhead of sandboxed grading over plain notebook execution.

    python -m autograder.bench --students 4 --jobs 2 [--assignment 01_attention]

Plain execution = nbclient running the reference notebook with the course kernel, as `cli run` does,
N times in a row. Prints one JSON object with the timings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from .base import SOLUTIONS
from .grading import Grader, Options
from .sandbox import Limits
from .selfcheck import execute_with_nbclient


def grade_time(source_dir: Path, assignment: str, students: int, jobs: int) -> float:
    workspace = Path(tempfile.mkdtemp(prefix=f"bench-j{jobs}-"))
    reference = source_dir / assignment / f"{assignment}.ipynb"
    for index in range(students):
        folder = workspace / "submitted" / f"student{index}" / assignment
        folder.mkdir(parents=True)
        shutil.copy(reference, folder / reference.name)
    grader = Grader(Options(workspace=workspace, jobs=jobs, source_dir=source_dir, limits=Limits()))
    grader.ensure_release(assignment)            # not timed: once per assignment, not per submission
    start = time.perf_counter()
    results = grader.run(progress=lambda message: None)
    seconds = time.perf_counter() - start
    assert all(r.status == "graded" for r in results), [(r.student, r.status, r.reason) for r in results]
    shutil.rmtree(workspace, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--assignment", default="01_attention")
    parser.add_argument("--source-dir", type=Path, default=SOLUTIONS)
    args = parser.parse_args()
    reference = args.source_dir / args.assignment / f"{args.assignment}.ipynb"
    plain = []
    for _ in range(args.students):
        start = time.perf_counter()
        execute_with_nbclient(reference)
        plain.append(time.perf_counter() - start)
    serial = grade_time(args.source_dir, args.assignment, args.students, 1)
    parallel = grade_time(args.source_dir, args.assignment, args.students, args.jobs)
    print(json.dumps({
        "assignment": args.assignment, "students": args.students, "jobs": args.jobs,
        "plain_execution_s": round(sum(plain), 1), "serial_grading_s": round(serial, 1),
        "parallel_grading_s": round(parallel, 1), "speedup": round(serial / parallel, 2),
        "overhead_per_submission_s": round((serial - sum(plain)) / args.students, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
