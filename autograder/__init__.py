"""The course's grading harness around nbgrader: release, validate, grade, check, mutants."""
