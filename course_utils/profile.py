"""One switch for run sizes: COURSE_PROFILE = fast | default | full.

fast: CI and the autograder (tiny data, few epochs); default: a laptop CPU, each notebook in a few
minutes; full: a GPU, bigger models and better results. Notebooks pick sizes in one config cell::

    EPOCHS = profile_value(fast=1, default=10, full=50)
"""
import os

PROFILES = ("fast", "default", "full")


def current_profile():
    name = os.environ.get("COURSE_PROFILE", "default").strip() or "default"
    if name not in PROFILES:
        raise ValueError(f"COURSE_PROFILE must be one of {PROFILES}, got {name!r}")
    return name


PROFILE = current_profile()


def profile_value(fast, default, full=None):
    """The value for the active profile; `full` falls back to `default` when not given."""
    profile = current_profile()
    if profile == "fast":
        return fast
    if profile == "full" and full is not None:
        return full
    return default
