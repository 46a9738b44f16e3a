"""Shared helpers for the course notebooks: the preamble, checks, plots, widgets, data, models,
training loops and the torchrun launcher.

Notebooks import from here, so a helper works from any folder (nbgrader hands learners single
assignment folders). The package holds no exercise solutions: what a learner writes is never a
one-line call of something in here.
"""

from vlmcourse.device import get_device, seed_everything
from vlmcourse.notebook import NotebookClock, setup_notebook

__all__ = ["NotebookClock", "get_device", "seed_everything", "setup_notebook"]
__version__ = "0.1.0"
