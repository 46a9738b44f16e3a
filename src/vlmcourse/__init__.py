"""Shared helpers for the course notebooks: checks, plots, widgets, data and devices.

Notebooks import from here, so a helper works from any folder (nbgrader hands learners single
assignment folders). The package holds no exercise solutions.
"""

from vlmcourse.device import get_device, seed_everything

__all__ = ["get_device", "seed_everything"]
__version__ = "0.1.0"
