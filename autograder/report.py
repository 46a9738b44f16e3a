"""Summary report of a grading run: score distribution and per-test failure rates.

Reads ``grades.csv`` and the per-submission ``grading/<assignment>/<student>/result.json`` files and
writes ``report/index.html`` (tables), ``report/<assignment>_scores.png`` (histogram of scores) and
``report/<assignment>_tests.png`` (share of submissions failing each test),
``report/test_failures.csv``, and ``report/mistakes.csv``: per test, how many submissions made each
known mistake (the tests' checks name a classic mistake when an answer matches it, "Your result
matches a known mistake: ..."). Instructors see at a glance which exercise confused the class, and
how, and which submissions need a look (ungradable, partially graded, flagged).
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections import Counter, defaultdict
from pathlib import Path


def load(workspace: Path) -> tuple[list[dict], dict[str, dict[str, dict]]]:
    rows = []
    grades = workspace / "grades.csv"
    if grades.exists():
        with open(grades, newline="") as handle:
            rows = list(csv.DictReader(handle))
    tests: dict[str, dict[str, dict]] = defaultdict(dict)   # assignment -> student -> tests
    for path in sorted((workspace / "grading").glob("*/*/result.json")):
        data = json.loads(path.read_text())
        if data["status"] != "ungradable":
            tests[data["assignment"]][data["student"]] = data["tests"]
    return rows, tests


def failure_rates(tests: dict[str, dict]) -> list[tuple[str, int, int, dict[str, int]]]:
    """(test id, failed, total, outcome counts) for each test of one assignment, in notebook order."""
    counts: dict[str, dict[str, int]] = {}
    for per_student in tests.values():
        for gid, outcome in per_student.items():
            counts.setdefault(gid, defaultdict(int))[outcome["outcome"]] += 1
    rates = []
    for gid, outcome_counts in counts.items():
        total = sum(outcome_counts.values())
        rates.append((gid, total - outcome_counts.get("passed", 0), total, dict(outcome_counts)))
    return rates


# The words vlmcourse.checks uses when a failing answer equals a known mistake's output.
KNOWN_MISTAKE = re.compile(r"matches a known mistake: (.+?)\.(?=\s|$)")


def mistake_counts(tests: dict[str, dict]) -> list[tuple[str, str, int]]:
    """(test id, mistake, submissions) for each known mistake that failing answers of one assignment matched."""
    counts: Counter = Counter()
    for per_student in tests.values():
        for gid, outcome in per_student.items():
            if outcome["outcome"] != "passed":
                for mistake in set(KNOWN_MISTAKE.findall(outcome.get("detail") or "")):
                    counts[gid, mistake] += 1
    return [(gid, mistake, n) for (gid, mistake), n in counts.most_common()]


def write_report(workspace: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = workspace / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows, tests = load(workspace)
    parts = ["<html><head><meta charset='utf-8'><title>Grading report</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:left}</style></head><body><h1>Grading report</h1>"]
    failure_rows, mistake_rows = [], []
    for assignment in sorted({r["assignment"] for r in rows}):
        mine = [r for r in rows if r["assignment"] == assignment]
        scored = [float(r["score"]) / float(r["max_score"]) * 100 for r in mine
                  if r["score"] not in ("", None) and float(r["max_score"] or 0) > 0]
        statuses = defaultdict(int)
        for r in mine:
            statuses[r["status"]] += 1
        figure, axis = plt.subplots(figsize=(6, 3))
        axis.hist(scored, bins=[i * 10 for i in range(11)], color="tab:blue", edgecolor="white")
        axis.set(xlabel="score (% of max)", ylabel="submissions", title=f"{assignment}: score distribution")
        figure.tight_layout()
        figure.savefig(out / f"{assignment}_scores.png", dpi=100)
        plt.close(figure)
        rates = failure_rates(tests.get(assignment, {}))
        figure, axis = plt.subplots(figsize=(6, 0.4 * max(3, len(rates)) + 1))
        axis.barh([r[0] for r in rates][::-1], [100 * r[1] / max(1, r[2]) for r in rates][::-1], color="tab:red")
        axis.set(xlabel="% of graded submissions failing", xlim=(0, 100), title=f"{assignment}: failure rate per test")
        figure.tight_layout()
        figure.savefig(out / f"{assignment}_tests.png", dpi=100)
        plt.close(figure)
        mean = sum(scored) / len(scored) if scored else float("nan")
        parts.append(f"<h2>{html.escape(assignment)}</h2><p>{len(mine)} submissions: "
                     + ", ".join(f"{n} {html.escape(s)}" for s, n in sorted(statuses.items()))
                     + f". Mean score {mean:.1f}%.</p>")
        parts.append(f"<img src='{assignment}_scores.png'> <img src='{assignment}_tests.png'>")
        parts.append("<table><tr><th>test</th><th>failed</th><th>of</th><th>outcomes</th></tr>")
        for gid, failed, total, outcome_counts in rates:
            parts.append(f"<tr><td>{html.escape(gid)}</td><td>{failed}</td><td>{total}</td><td>"
                         + html.escape(", ".join(f"{k}: {v}" for k, v in sorted(outcome_counts.items())))
                         + "</td></tr>")
            failure_rows.append({"assignment": assignment, "test": gid, "failed": failed, "total": total,
                                 "failure_rate": round(failed / max(1, total), 3)})
        parts.append("</table>")
        mistakes = mistake_counts(tests.get(assignment, {}))
        if mistakes:
            parts.append("<h3>Known mistakes made</h3><table><tr><th>test</th><th>mistake</th>"
                         "<th>submissions</th></tr>")
            for gid, mistake, count in mistakes:
                parts.append(f"<tr><td>{html.escape(gid)}</td><td>{html.escape(mistake)}</td><td>{count}</td></tr>")
                mistake_rows.append({"assignment": assignment, "test": gid, "mistake": mistake, "submissions": count})
            parts.append("</table>")
        attention = [r for r in mine if r["status"] != "graded" or r["flags"]]
        if attention:
            parts.append("<h3>Needs a look</h3><table><tr><th>student</th><th>status</th><th>reason</th>"
                         "<th>flags</th></tr>")
            for r in attention:
                parts.append("<tr>" + "".join(f"<td>{html.escape(str(r[k]))[:400]}</td>"
                                              for k in ("student_id", "status", "reason", "flags")) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    (out / "index.html").write_text("\n".join(parts), encoding="utf-8")
    with open(out / "test_failures.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["assignment", "test", "failed", "total", "failure_rate"])
        writer.writeheader()
        writer.writerows(failure_rows)
    with open(out / "mistakes.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["assignment", "test", "mistake", "submissions"])
        writer.writeheader()
        writer.writerows(mistake_rows)
    return out / "index.html"
