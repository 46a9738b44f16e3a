"""The code's large shape: modules import down, never in a circle, and nothing imports the CLI.

Every ``import`` anywhere in a module counts (also those inside functions: a lazy import is still a
dependency). Project modules are those of ``autograder`` and ``vlmcourse``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"autograder": REPO / "autograder", "vlmcourse": REPO / "src" / "vlmcourse"}
# The kernel side of the guard is read as text and run inside the learner's kernel, never imported.
NOT_MODULES = {"autograder.kernel_guard", "autograder.nbgrader_config"}


def project_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``name`` imports (absolute or relative, anywhere in the file)."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: ``from . import x`` / ``from .base import x``, one level per dot
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    modules = {n: p for n, p in project_modules().items() if n not in NOT_MODULES}
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for child in sorted(edges.get(node, ())):
            if state.get(child) == "open":
                return trail[trail.index(child):] + [child] if child in trail else [node, child, node]
            if child not in state:
                cycle = visit(child, trail + [child])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_finder_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_among_the_project_modules() -> None:
    edges = graph()
    assert {"autograder.grading", "autograder.base", "vlmcourse.checks"} <= set(edges)
    assert "autograder.base" in edges["autograder.grading"], "the finder must see relative imports"
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_nothing_imports_the_cli() -> None:
    importers = sorted(name for name, imported in graph().items() if "autograder.cli" in imported)
    tests = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("*.py")
                   if "autograder.cli" in imports_of("tests." + p.stem, p, {"autograder.cli"}))
    assert not importers and not tests, f"autograder/cli.py is the top layer; imported by {importers + tests}"


def test_the_base_layer_imports_no_other_grading_module() -> None:
    imported = graph()["autograder.base"]
    assert not imported, f"autograder/base.py must stay the ground floor; it imports {sorted(imported)}"
