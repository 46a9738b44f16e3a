"""Several graders at once on a real PostgreSQL gradebook.

Starts a throw-away PostgreSQL server (Debian's `postgresql` package) on a Unix socket, then runs two
grader processes concurrently, each on its shard of the students, both writing to the same gradebook.
Skips, saying why, when the server binaries or the driver (psycopg2-binary) are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from bad_submissions.catalogue import ASSIGNMENT, FULL, WRONG_MEMORY, build_source, replace_body

pytestmark = [pytest.mark.xdist_group("grading"), pytest.mark.notebook]
REPO = Path(__file__).resolve().parents[2]


def postgres_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="module")
def postgres():
    pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed (pip install -r requirements.txt)")
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    data = Path(tempfile.mkdtemp(prefix="pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:       # PostgreSQL refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
        os.chmod(data, 0o755)
        os.chown(data, user.pw_uid, user.pw_gid)
        run_as = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = data / "cluster"
    subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(cluster), "-U", "grader", "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(cluster), "-l", str(data / "log"), "-w", "-o",
                             f"-k {data} -p {port} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        subprocess.run(run_as + [str(bindir / "createdb"), "-h", str(data), "-p", str(port), "-U", "grader", "grades"],
                       check=True, capture_output=True)
        yield f"postgresql://grader@/grades?host={data}&port={port}"
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(cluster), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_two_graders_write_concurrently_to_postgresql(postgres: str) -> None:
    from nbgrader.api import Gradebook

    from autograder.gradebook import normalize_db_url

    tmp = Path(tempfile.mkdtemp(prefix="grading-pg-"))
    source = tmp / "source"
    reference = build_source(source)
    students = {"s1": FULL, "s2": FULL - 2}     # s1 hashes to shard 1, s2 to shard 0: one each
    for student, expected in students.items():
        folder = tmp / "ws" / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        notebook = nbformat.read(reference, as_version=4)
        if expected != FULL:
            replace_body(notebook, "attention_memory_bytes", WRONG_MEMORY)
        nbformat.write(notebook, folder / f"{ASSIGNMENT}.ipynb")
    env = {**os.environ, "VLM_COURSE_WORKSPACE": str(tmp / "ws")}
    command = [sys.executable, "-m", "autograder.cli", "grade", ASSIGNMENT, "--jobs", "1", "--db-url", postgres,
               "--source-dir", str(source), "--cell-timeout", "60"]
    start = time.monotonic()
    graders = [subprocess.Popen(command + ["--shard", f"{i}/2"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [g.communicate(timeout=600)[0] for g in graders]
    assert all(g.returncode == 0 for g in graders), "\n".join(o[-3000:] for o in outputs)
    assert time.monotonic() - start < 600
    with Gradebook(normalize_db_url(postgres), "vlm-course") as gradebook:
        rows = {s.student.id: s for s in gradebook.assignment_submissions(ASSIGNMENT)}
        assert set(rows) == set(students), "one submission per student in the shared gradebook"
        for student, expected in students.items():
            assert rows[student].score == expected, f"{student}: {rows[student].score} != {expected}"
    # a second run, both graders again: nothing to grade, nothing duplicated
    again = [subprocess.run(command + ["--shard", f"{i}/2"], cwd=REPO, env=env, capture_output=True, text=True)
             for i in range(2)]
    assert all("0 submission(s) to grade" in r.stdout for r in again), [r.stdout[-500:] for r in again]
    with Gradebook(normalize_db_url(postgres), "vlm-course") as gradebook:
        assert len(gradebook.assignment_submissions(ASSIGNMENT)) == len(students)
