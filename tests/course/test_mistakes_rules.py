"""The rules of a mistakes file (docs/authoring.md, "The mistakes file"), on small files written here."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from autograder.base import assignments
from harness import MistakesFileError, load_mistakes, own_test, parse_mistakes

EXERCISE = '''def double(x):
    """Twice ``x``."""
    ### BEGIN SOLUTION
    y = x + x  # the sum, not a product
    return y   # "#" in a comment
    ### END SOLUTION'''


def code(source: str, **nbgrader: object) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "task": False, "locked": not nbgrader.get("solution"),
                                     **nbgrader}
    return cell


def exercise(name: str, source: str = "pass") -> nbformat.NotebookNode:
    return code(source, grade_id=name, solution=True, grade=False)


def graded(name: str) -> nbformat.NotebookNode:
    return code("assert True, 'fine'", grade_id=name, solution=False, grade=True, points=1)


@pytest.fixture
def notebook() -> nbformat.NotebookNode:
    """double, then its test; two exercises sharing one test; an exercise with no test after it."""
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# a module"),
        exercise("double", EXERCISE), nbformat.v4.new_markdown_cell("prose"), code("print(1)"),
        graded("test_double"),
        exercise("first"), exercise("second"), graded("test_both"), graded("test_second_again"),
        exercise("orphan"),
    ])


def load(tmp_path: Path, notebook: nbformat.NotebookNode, text: str):
    path = tmp_path / "99_rules.yaml"
    path.write_text(text, encoding="utf-8")
    return parse_mistakes(path, notebook, "99_rules")


def test_own_test_is_the_first_graded_test_cell_after_the_exercise(notebook) -> None:
    assert own_test(notebook, "double") == "test_double"
    assert own_test(notebook, "first") == "test_both", "other exercise cells may sit between"
    assert own_test(notebook, "second") == "test_both"
    with pytest.raises(LookupError, match="no graded test cell after"):
        own_test(notebook, "orphan")


def test_fails_defaults_to_the_own_test_and_may_be_given(tmp_path, notebook) -> None:
    mistakes = load(tmp_path, notebook, """
- name: product
  cell: double
  find: "x + x"
  replace: "x * x"
  message: "differs"
- name: listed
  cell: first
  find: "pass"
  fails: [test_both, test_second_again]
  message: "differs"
""")
    assert [m.fails for m in mistakes] == [("test_double",), ("test_both", "test_second_again")]
    assert mistakes[1].replace == "", "replace defaults to the empty string"


def test_fails_omitted_without_a_test_after_the_exercise(tmp_path, notebook) -> None:
    with pytest.raises(MistakesFileError, match=r"99_rules\.yaml, entry 1 \('lost'\).*no graded test cell"):
        load(tmp_path, notebook, "- {name: lost, cell: orphan, find: pass, message: x}\n")


@pytest.mark.parametrize("find", ["x + x  # the sum", "the sum", "# the", "y   #", 'return y   # "#"',
                                  "### BEGIN SOLUTION", 'a comment\n    ### END SOLUTION'])
def test_find_that_touches_a_comment_is_rejected(tmp_path, notebook, find: str) -> None:
    text = yaml.safe_dump([{"name": "commented", "cell": "double", "find": find, "message": "differs"}])
    with pytest.raises(MistakesFileError, match=r"99_rules\.yaml, entry 1 \('commented'\): 'find' overlaps the comment"):
        load(tmp_path, notebook, text)


@pytest.mark.parametrize("find", ["y = x + x", "y = x + x  ", "return y", '"""Twice ``x``."""'])
def test_find_in_code_next_to_a_comment_is_accepted(tmp_path, notebook, find: str) -> None:
    text = yaml.safe_dump([{"name": "code only", "cell": "double", "find": find, "message": "differs"}])
    assert load(tmp_path, notebook, text)[0].find == find


def test_a_hash_inside_a_string_is_not_a_comment(tmp_path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[
        exercise("tag", 'def tag(x):\n    return "#" + x  # prefix'), graded("test_tag")])
    assert load(tmp_path, notebook, "- {name: hash, cell: tag, find: '\"#\" + x', message: m}\n")[0].find == '"#" + x'


@pytest.mark.parametrize("entry, error", [
    ("{name: typo, cell: double, find: x + x, message: m, fail: [test_double]}", r"unknown key\(s\) \['fail'\]"),
    ("{name: typo, cell: double, find: x + x, message: m, note: why}", r"unknown key\(s\) \['note'\]"),
    ("{name: short, cell: double, find: x + x}", r"missing key\(s\) \['message'\]"),
    ("{name: nowhere, cell: triple, find: x + x, message: m}", "no exercise cell 'triple'"),
    ("{name: empty, cell: double, find: '', message: m}", "'find' is empty"),
    ("{name: number, cell: double, find: 2, message: m}", "'find' must be a string"),
    ("{name: one, cell: double, find: x + x, message: m, fails: test_double}", "'fails' must be a non-empty list"),
])
def test_malformed_entries_are_rejected_naming_file_and_entry(tmp_path, notebook, entry: str, error: str) -> None:
    text = "- {name: fine, cell: double, find: x + x, message: m}\n- " + entry + "\n"
    with pytest.raises(MistakesFileError, match=r"99_rules\.yaml, entry 2 \('[a-z]+'\): " + error):
        load(tmp_path, notebook, text)


def test_a_file_that_is_not_a_list_is_rejected(tmp_path, notebook) -> None:
    with pytest.raises(MistakesFileError, match="expected a list"):
        load(tmp_path, notebook, "name: not a list\n")
    assert load(tmp_path, notebook, "# only comments: no mistakes yet\n") == []


@pytest.mark.parametrize("assignment", assignments())
def test_the_course_mistakes_files_follow_the_rules(assignment: str) -> None:
    load_mistakes(assignment)
