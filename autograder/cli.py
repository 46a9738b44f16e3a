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
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
AUTOGRADER = REPO / "autograder"
SOLUTIONS = REPO / "solutions"
COURSE = REPO / "course"
KERNEL = "vlm-course"
CELL_TIMEOUT = 600


def assignments() -> list[str]:
    """Assignment ids (folder names in solutions/ holding a notebook of the same name), in order."""
    return sorted(p.name for p in SOLUTIONS.iterdir() if (p / f"{p.name}.ipynb").is_file())


def workspace() -> Path:
    return Path(os.environ.get("VLM_COURSE_WORKSPACE", AUTOGRADER / "workspace")).resolve()


def nbgrader(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run an nbgrader command with the course's configuration; raise with its log if it fails."""
    env = {**os.environ, **(env or {})}
    # nbgrader calls tools of its environment (alembic) by name: put them first on PATH.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    Path(env.get("VLM_COURSE_WORKSPACE", AUTOGRADER / "workspace")).mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "nbgrader", *args]
    result = subprocess.run(command, cwd=AUTOGRADER, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# ----------------------------------------------------------------------------------------- generate
def generate_release(assignment: str, destination: Path) -> Path:
    """Generate the student version of ``assignment`` into ``destination/assignment`` (no gradebook)."""
    nbgrader("generate_assignment", assignment, "--no-db", "--force",
             f"--CourseDirectory.release_directory={destination}")
    return destination / assignment


def generate_course(selected: list[str] | None = None) -> None:
    """Regenerate ``course/<assignment>`` for each assignment; the old copy survives a failure."""
    for assignment in selected or assignments():
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate_release(assignment, Path(tmp))
            target = COURSE / assignment
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(fresh, target)
        print(f"generated course/{assignment}")


# ------------------------------------------------------------------------------------ run & check
@dataclass
class TestResult:
    grade_id: str
    points: float
    max_points: float
    error: str | None


def execute(path: Path, timeout: int = CELL_TIMEOUT) -> tuple[nbformat.NotebookNode, float]:
    """Execute a copy of the notebook at ``path`` in its own folder; errors are kept, not raised."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name=KERNEL, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    start = time.perf_counter()
    client.execute()
    return notebook, time.perf_counter() - start


def error_of(cell: nbformat.NotebookNode) -> str | None:
    """The error a cell raised, as ``Name: message``, or the stderr it printed; None if clean."""
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return f"{output.ename}: {output.evalue}"
    for output in cell.get("outputs", []):
        if output.output_type == "stream" and output.name == "stderr":
            return "the cell wrote to stderr (graded cells must not): " + output.text.strip()[:300]
    return None


def graded_results(notebook: nbformat.NotebookNode) -> list[TestResult]:
    """Points of each graded test cell of an executed notebook, the way nbgrader counts them."""
    from nbgrader.utils import determine_grade, is_grade, is_solution

    results = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and is_grade(cell) and not is_solution(cell):
            points, max_points = determine_grade(cell)
            results.append(TestResult(cell.metadata.nbgrader["grade_id"], float(points or 0), max_points,
                                      error_of(cell)))
    return results


def run_notebook(path: Path) -> int:
    notebook, seconds = execute(path)
    failures = [(i, error_of(c)) for i, c in enumerate(notebook.cells) if c.cell_type == "code" and
                any(o.output_type == "error" for o in c.get("outputs", []))]
    for index, error in failures:
        print(f"cell {index}: {error}")
    print(f"{path.name}: executed in {seconds:.1f} s, {len(failures)} cell(s) with errors")
    return 1 if failures else 0


def check_notebook(path: Path) -> int:
    """Self-check: execute the learner's notebook and print, test by test, what passed and why not."""
    print(f"Running {path.name} (this executes the whole notebook) ...", flush=True)
    notebook, seconds = execute(path)
    results = graded_results(notebook)
    if not results:
        print("No graded tests found: is this a course notebook?")
        return 2
    width = max(len(r.grade_id) for r in results)
    for result in results:
        mark = "PASS" if result.error is None else "FAIL"
        print(f"  {mark}  {result.grade_id:<{width}}  {result.points:g}/{result.max_points:g}")
        if result.error:
            print(f"        {result.error}")
    score = sum(r.points for r in results)
    total = sum(r.max_points for r in results)
    print(f"Score on the visible tests: {score:g}/{total:g} (executed in {seconds:.0f} s). "
          "Hidden tests may check more when your instructor grades.")
    return 0 if score == total else 1


# ------------------------------------------------------------------------------------------- grade
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
    parser.add_argument("--db-url", help="gradebook URL (default sqlite in the workspace; postgresql://... for several graders)")
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
    collect.add_argument("--zip", type=Path, help="folder of LMS zip/ipynb downloads (nbgrader zip_collect)")
    args = parser.parse_args(argv)
    if args.command == "generate":
        generate_course(args.assignments)
        return 0
    if args.command == "run":
        return run_notebook(args.notebook)
    if args.command == "check":
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
