"""The catalogue of bad submissions (see catalogue.py) used by tests/test_grading*.py."""
