"""Shared test setup: a non-interactive matplotlib (imports come from pyproject's pythonpath)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
