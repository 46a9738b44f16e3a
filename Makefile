# The course's commands. `make start` opens the course, `make test` runs every test; both create the
# environment (.venv, with the course's Jupyter kernel) when it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KERNEL := vlm-course
JOBS ?= 2
STAMP := $(VENV)/.installed

.PHONY: help env start test test-fast lint course check grade report clean-workspace hub hub-stop

help:
	@echo "make start              open the course in JupyterLab (creates the environment if needed)"
	@echo "make test               run every test (creates the environment if needed), lint first"
	@echo "make test-fast          the tests that execute no notebook (a few minutes), lint first"
	@echo "make lint               ruff, configured in pyproject.toml"
	@echo "make course             regenerate the student notebooks in course/ from solutions/"
	@echo "make check NB=path      self-check one notebook: which tests pass, which fail and why"
	@echo "make grade              instructor: grade every submission (parallel, sandboxed, resumable):"
	@echo "                        feedback, grades.csv with a status per submission, report/ (GRADE_ARGS=...)"
	@echo "make report             instructor: rebuild grades.csv and report/ from the last grading"
	@echo "make hub                admin, as root: a real local JupyterHub with the course (docs/jupyterhub.md)"
	@echo "make hub-stop           stop it and remove its users, groups and files"

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (VLM course)"
	# Learners get nbgrader's student tools; the instructor tools stay off in this environment (the
	# grader service turns the formgrader back on in its own configuration, autograder/deploy/).
	$(VENV)/bin/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader:formgrader @jupyter/nbgrader:create-assignment >/dev/null
	# JupyterLab >= 4.1 lets a user re-enable a disabled plugin unless it is also locked.
	$(VENV)/bin/jupyter labextension lock --level=sys_prefix @jupyter/nbgrader:formgrader @jupyter/nbgrader:create-assignment >/dev/null
	$(VENV)/bin/jupyter server extension disable --sys-prefix nbgrader.server_extensions.formgrader >/dev/null
	touch $@

start: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=course

test: lint
	$(PY) -m pytest -n $(JOBS) --dist loadgroup --durations=40 $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -m "not notebook" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

course: $(STAMP)
	$(PY) -m autograder.cli generate

check: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make check NB=course/01_attention/01_attention.ipynb"; exit 2; }
	$(PY) -m autograder.cli check "$(NB)"

grade: $(STAMP)
	$(PY) -m autograder.cli grade $(GRADE_ARGS)

report: $(STAMP)
	$(PY) -m autograder.cli report

clean-workspace:
	rm -rf autograder/workspace

# A real JupyterHub on 127.0.0.1 with a grader account, an instructor and STUDENTS learners (root).
STUDENTS ?= 2
HUB_ROOT ?= /tmp/vlm-course-hub
hub: $(STAMP)
	$(PY) -m autograder.hub start --root $(HUB_ROOT) --students $(STUDENTS)

hub-stop: $(STAMP)
	$(PY) -m autograder.hub stop --root $(HUB_ROOT)
