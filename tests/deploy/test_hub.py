"""The course on a real JupyterHub, end to end: the deployment of autograder/deploy/ started by
autograder/hub.py (JupyterHub, configurable-http-proxy, PAM users, the grader service), and the loop
release -> fetch -> submit -> collect -> grade -> release feedback -> fetch feedback, each step done the
way it is done on the cluster: learners through their own servers behind the hub's proxy, the grader
with the project's grading command as the grader account.

Needs root (it creates Unix users), node/npm and a course environment other users can run; it skips
with the reason otherwise. CI runs it as root.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import html
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import browser
import nbformat
import pytest

from autograder import cells
from autograder.base import COURSE_ID, REPO, SOLUTIONS
from autograder.hub import GRADER, INSTRUCTOR, LocalHub, unavailable

pytestmark = [pytest.mark.xdist_group("hub")]
ASSIGNMENT = "01_attention"
SOLVED = ["softmax", "masked_softmax"]          # the partly solved submission: these two exercises
POINTS = cells.points_by_test(nbformat.read(SOLUTIONS / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4))
SOLVED_POINTS = sum(POINTS[f"test_{name}"] for name in SOLVED)
MAX_POINTS = sum(POINTS.values())


@contextlib.contextmanager
def one_hub_at_a_time() -> Iterator[None]:
    """A machine-wide lock: a local hub's users and groups have fixed names, so two hubs (another
    pytest-xdist worker's, or this test's second one) never run at once."""
    with open(Path(tempfile.gettempdir()) / f"vlm-course-hub-test-{os.geteuid()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def local_hub(**options) -> Iterator[LocalHub]:
    """A LocalHub in a fresh folder under /tmp; it must leave nothing behind."""
    root = Path(tempfile.mkdtemp(prefix="vlm-hub-", dir="/tmp"))
    root.rmdir()
    with LocalHub(root, **options) as running:
        yield running
    assert not root.exists()


def request(hub: LocalHub, method: str, path: str, token: str, body=None, form: dict | None = None,
            headers: dict | None = None):
    """One HTTP request through the hub's proxy (127.0.0.1) with a user's token."""
    data, kind = None, "application/json"
    if form is not None:
        data, kind = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(hub.url + path, method=method, data=data,
                                 headers={"Authorization": f"token {token}", "Content-Type": kind, **(headers or {})})
    with urllib.request.urlopen(req, timeout=120) as response:
        return response.status, dict(response.headers), response.read().decode()


def partly_solved(release: dict) -> dict:
    source = nbformat.read(SOLUTIONS / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = {cells.grade_id(c): c.source for c in source.cells if cells.is_solution(c)}
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        if cells.grade_id(cell) in SOLVED:
            cell.source = answers[cells.grade_id(cell)]
    return notebook


def release_submit_grade_feedback(hub: LocalHub) -> dict[str, str]:
    """The whole loop, through the hub; returns each student's feedback page (a path on the hub)."""
    started = time.monotonic()
    partial, blank = hub.student_names
    tokens = {user: hub.token(user) for user in (partial, blank, INSTRUCTOR)}
    course = {"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}
    for student in (partial, blank):
        hub.start_server(student)
        # The learner's server lists the course's assignments (its groups come from the hub API).
        status, _, text = request(hub, "GET", f"/user/{student}/assignments?course_id={COURSE_ID}", tokens[student])
        assert json.loads(text)["success"], text
        status, _, text = request(hub, "POST", f"/user/{student}/assignments/fetch", tokens[student], form=course)
        assert json.loads(text)["success"], text
    # The partly solved notebook is saved through the learner's server, like an edit in JupyterLab.
    # With path_includes_course the exchange fetches into <course>/<assignment>/ of the learner's home.
    path = f"/user/{partial}/api/contents/{COURSE_ID}/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
    _, _, text = request(hub, "GET", path, tokens[partial])
    release = json.loads(text)["content"]
    request(hub, "PUT", path, tokens[partial], body={"type": "notebook", "format": "json",
                                                      "content": partly_solved(release)})
    for student in (partial, blank):
        _, _, text = request(hub, "POST", f"/user/{student}/assignments/submit", tokens[student], form=course)
        assert json.loads(text)["success"], text

    # The grader account collects from the exchange and grades with the project's grading command.
    hub.as_grader("nbgrader", "collect", ASSIGNMENT, "--update")
    grade = hub.as_grader("python", "-m", "autograder.cli", "grade", ASSIGNMENT, "--jobs", "2", cwd=REPO,
                          timeout=400)
    rows = {r["student_id"]: r for r in csv.DictReader((hub.course_dir / "grades.csv").open())}
    assert set(rows) == {partial, blank}, grade.stdout
    assert rows[partial]["status"] == rows[blank]["status"] == "graded", \
        ({s: r["reason"] for s, r in rows.items()}, grade.stderr[-3000:])
    assert (rows[partial]["status"], float(rows[partial]["score"])) == ("graded", SOLVED_POINTS), rows[partial]
    assert (rows[blank]["status"], float(rows[blank]["score"])) == ("graded", 0.0), rows[blank]
    assert float(rows[partial]["max_score"]) == MAX_POINTS
    hub.as_grader("nbgrader", "release_feedback", ASSIGNMENT)

    # Each learner fetches the feedback through the server; no line of a hidden test is in it.
    source = nbformat.read(SOLUTIONS / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    hidden = [line for c in source.cells if cells.is_test(c) for line in cells.hidden_lines(c.source)]
    assert hidden, "the assignment has hidden tests"
    pages = {}
    for student in (partial, blank):
        _, _, text = request(hub, "POST", f"/user/{student}/assignments/fetch_feedback", tokens[student], form=course)
        assert json.loads(text)["success"], text
        feedback = f"/user/{student}/api/contents/{COURSE_ID}/{ASSIGNMENT}/feedback"
        _, _, text = request(hub, "GET", feedback, tokens[student])
        folders = [item["path"] for item in json.loads(text)["content"] if item["type"] == "directory"]
        assert len(folders) == 1, text
        pages[student] = f"/user/{student}/files/{urllib.parse.quote(folders[0])}/{ASSIGNMENT}.html"
        _, _, page = request(hub, "GET", pages[student], tokens[student])
        shown = html.unescape(page)
        assert "test_softmax" in shown and "BEGIN HIDDEN" not in shown
        leaked = [line for line in hidden if line in shown]
        assert not leaked, f"feedback of {student} shows hidden test lines: {leaked[:3]}"

    # The instructor reaches the formgrader through the proxy, in its own tab, and it sees the grades.
    status, headers, page = request(hub, "GET", f"/services/{COURSE_ID}/formgrader/", tokens[INSTRUCTOR])
    assert status == 200 and "nbgrader" in page.lower()
    # ... and only there: without subdomains nothing may frame it (JupyterHub's default policy).
    policy = {name.lower(): value for name, value in headers.items()}.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy, headers
    _, _, text = request(hub, "GET", f"/services/{COURSE_ID}/formgrader/api/submissions/{ASSIGNMENT}",
                         tokens[INSTRUCTOR])
    scores = {s["student"]: s["score"] for s in json.loads(text)}
    assert scores == {partial: SOLVED_POINTS, blank: 0.0}, text
    # A learner may not open it.
    with pytest.raises(urllib.error.HTTPError) as refused:
        request(hub, "GET", f"/services/{COURSE_ID}/formgrader/", tokens[blank])
    assert refused.value.code == 403
    assert time.monotonic() - started < 300
    return pages


def log_in_and_open(driver, hub: LocalHub, user: str, page: str, screens: Path) -> None:
    """Log ``user`` in on the hub's login page in the browser, which then opens ``page`` (a path)."""
    driver.get(f"{hub.url}/hub/login?next={urllib.parse.quote(page)}")
    browser.wait_for(driver, screens, "return document.querySelector('#username_input')", "the hub's login page")
    driver.execute_script("document.querySelector('#username_input').value = arguments[0];"
                          "document.querySelector('#password_input').value = arguments[1];"
                          "document.querySelector('#login_submit').click()", user, hub.users[user])


def instructor_sees_the_formgrader_in_a_browser(hub: LocalHub, tmp_path: Path) -> None:
    """The instructor logs in on the hub's page in Chromium and the formgrader renders, in its own tab,
    with both collected submissions and their scores (screenshots in ``tmp_path``)."""
    partial, blank = hub.student_names
    screens = tmp_path / "screens"
    page = f"/services/{COURSE_ID}/formgrader/manage_submissions/{ASSIGNMENT}"
    with browser.chromium(tmp_path) as driver:
        log_in_and_open(driver, hub, INSTRUCTOR, page, screens)
        # The formgrader's table is filled by its JavaScript from the formgrader's API.
        shown = browser.wait_for(driver, screens, f"const t = document.body.innerText; return t.includes('{partial}')"
                                 f" && t.includes('{blank}') && t", "the formgrader's submissions", timeout=120)
        browser.shot(driver, screens, "formgrader-submissions")
        assert driver.current_url.startswith(hub.url + page), driver.current_url
        table = driver.execute_script("return [...document.querySelectorAll('tbody tr')]"
                                      ".map(r => [...r.cells].map(c => c.innerText.trim()))")
        lines = [" ".join(row) for row in table]
        rows = {student: next((line for line in lines if student in line.split()), "") for student in (partial, blank)}
        assert "Manage Submissions" in shown and all(rows.values()), table
        assert f"{SOLVED_POINTS:g} / {MAX_POINTS:g}" in rows[partial] and "graded" in rows[partial], rows[partial]
        assert f"0 / {MAX_POINTS:g}" in rows[blank], rows[blank]
        # Without subdomains the formgrader refuses to be framed (JupyterHub's frame-ancestors 'none'):
        # the Lab's Formgrader tab would stay empty, which is why docs/jupyterhub.md opens it in its own tab.
        assert not formgrader_frames_itself(driver, screens, "formgrader-framed-without-subdomains")


def formgrader_frames_itself(driver, screens: Path, name: str) -> bool:
    """Put the page the browser shows into an iframe of itself (what the Lab's Formgrader tab does):
    True if the framed formgrader renders, False if the browser refuses to frame it."""
    driver.execute_script("window.probeLoaded = false; const frame = document.createElement('iframe');"
                          "frame.id = 'probe'; frame.style = 'width: 1000px; height: 400px';"
                          "frame.onload = () => { window.probeLoaded = true; };"
                          "frame.src = location.href; document.body.prepend(frame);")
    browser.wait_for(driver, screens, "return window.probeLoaded", f"{name}: the iframe's load", timeout=60)
    rendered = "const d = document.getElementById('probe').contentDocument; return !!(d && d.body && " \
               "d.body.innerText.includes('Manage'))"
    # a refused frame holds the browser's error page, of another origin: nothing to wait for
    if driver.execute_script("return document.getElementById('probe').contentDocument === null"):
        browser.shot(driver, screens, name)
        return False
    try:
        browser.wait_for(driver, screens, rendered, f"{name}: the framed formgrader", timeout=20)
        framed = True
    except AssertionError:
        framed = False
    browser.shot(driver, screens, name)
    return framed


def instructor_frames_the_formgrader_with_subdomains(tmp_path: Path) -> None:
    """With subdomain_host the grader service has an origin of its own and lets the formgrader frame
    itself: the framed page renders (Chromium resolves the hub's names to 127.0.0.1)."""
    screens = tmp_path / "screens"
    with local_hub(students=1, assignments=[], domain="hub.test") as hub:
        page = f"{hub.service_url}/services/{COURSE_ID}/formgrader/"
        token = hub.token(INSTRUCTOR)
        with urllib.request.urlopen(hub.open(page, headers={"Authorization": f"token {token}"}), timeout=60) as answer:
            policy = answer.headers.get("Content-Security-Policy", "")
        assert answer.status == 200 and "frame-ancestors 'self'" in policy, (answer.status, policy)
        rules = f"MAP *.{hub.domain} 127.0.0.1, MAP {hub.domain} 127.0.0.1"
        with browser.chromium(tmp_path, extra=[f"--host-resolver-rules={rules}"]) as driver:
            log_in_and_open(driver, hub, INSTRUCTOR, "/hub/home", screens)
            browser.wait_for(driver, screens, "return location.pathname.startsWith('/hub/home')", "the hub's home")
            driver.get(page)
            browser.wait_for(driver, screens, "return document.body.innerText.includes('Manage Assignments')",
                             "the formgrader on the service's own origin")
            assert driver.current_url.startswith(hub.service_url), driver.current_url
            assert formgrader_frames_itself(driver, screens, "formgrader-framed-with-subdomains"), \
                "with subdomain_host the formgrader should render in an iframe of its own origin"


def learner_reads_feedback_with_its_math_rendered_offline(hub: LocalHub, page: str, tmp_path: Path) -> None:
    """The learner opens the fetched feedback ``page`` in Chromium: MathJax comes from the learner's own Jupyter
    server (nothing from the internet) and typesets the notebook's math."""
    partial = hub.student_names[0]
    screens = tmp_path / "screens"
    with browser.chromium(tmp_path) as driver:
        log_in_and_open(driver, hub, partial, page, screens)
        typeset = browser.wait_for(driver, screens, "return document.querySelectorAll('.MathJax, .MathJax_CHTML')"
                                   ".length", "math typeset in the feedback", timeout=120)
        browser.shot(driver, screens, "feedback-math")
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        mathjax = [url for url in loaded if "MathJax" in url]
        assert mathjax and all(url.startswith(f"{hub.url}/user/{partial}/static/jupyter_server_mathjax/")
                               for url in mathjax), mathjax
        assert not [url for url in loaded if not url.startswith(("data:", hub.url))], loaded
        assert typeset > 10, f"only {typeset} formulas typeset"


def permission_model(hub: LocalHub) -> None:
    """Learners run the course environment but read nothing of the grader's, nor each other's work."""
    partial, blank = hub.student_names
    import_ok = hub.as_user(partial, "python", "-c", "import vlmcourse, torch, nbgrader", check=False)
    assert import_ok.returncode == 0, f"a learner must be able to run the course environment: {import_ok.stderr}"
    submitted = hub.course_dir / "submitted"
    other = submitted / blank / ASSIGNMENT
    assert other.exists(), f"nothing collected for {blank}"
    attempts = {
        "read the solutions": ["cat", str(SOLUTIONS / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")],
        "list the solutions": ["ls", str(SOLUTIONS)],
        "read the gradebook": ["cat", str(hub.course_dir / "gradebook.db")],
        "list the course directory": ["ls", str(hub.course_dir)],
        "read another's submission": ["cat", str(other / f"{ASSIGNMENT}.ipynb")],
        "write into another's submission": ["touch", str(other / "changed.txt")],
        "list the exchange's inbound": ["ls", str(hub.exchange / COURSE_ID / "inbound")],
        "read the grader's home": ["ls", str(hub.course_dir.parent)],
    }
    allowed = {what: hub.as_user(partial, "/usr/bin/" + argv[0], *argv[1:], check=False).returncode == 0
               for what, argv in attempts.items()}
    assert not any(allowed.values()), f"a learner could: {[w for w, ok in allowed.items() if ok]}"
    # Collected submissions are the grader's, and only the grader's.
    for path in [other, *other.rglob("*")]:
        info = path.stat()
        assert info.st_uid == hub_uid(GRADER) and not info.st_mode & 0o077, f"{path}: {oct(info.st_mode)}"


def hub_uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def test_the_course_on_a_real_hub(tmp_path: Path) -> None:
    """One test, in order: each step needs the state the one before it leaves (pytest-xdist has been
    seen to run separate tests of this module on separate workers, each with a hub of its own). Then a
    second hub, with subdomains, for the formgrader's iframe."""
    reason = unavailable()
    if reason:
        pytest.skip(f"no local JupyterHub here: {reason}")
    with one_hub_at_a_time():
        with local_hub(students=2, assignments=[ASSIGNMENT]) as hub:
            feedback_pages = release_submit_grade_feedback(hub)
            permission_model(hub)
            reason = browser.missing()
            if reason:
                pytest.skip(f"the hub steps passed; the browser steps did not run: {reason}")
            for step in ("instructor", "learner", "subdomains"):
                (tmp_path / step).mkdir()
            instructor_sees_the_formgrader_in_a_browser(hub, tmp_path / "instructor")
            learner_reads_feedback_with_its_math_rendered_offline(hub, feedback_pages[hub.student_names[0]],
                                                                  tmp_path / "learner")
        instructor_frames_the_formgrader_with_subdomains(tmp_path / "subdomains")
