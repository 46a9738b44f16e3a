"""The catalogue of bad submissions (see catalogue.py) used by tests/grading/."""
