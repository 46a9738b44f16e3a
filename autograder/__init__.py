"""Grading for the course: nbgrader configuration, generation of course/, self-check and autograding."""
