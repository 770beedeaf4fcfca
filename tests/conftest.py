import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "course"
BIN = Path(sys.executable).parent


def copy_toy_course(folder):
    """A copy of the two-exercise toy course; the CLI finds it as the working directory's course."""
    import shutil
    root = Path(folder) / "course"
    shutil.copytree(TOY, root)
    return root


@pytest.fixture
def toy_course(tmp_path):
    return copy_toy_course(tmp_path)


def autograder(*args, cwd=None, env=None, timeout=600):
    """Run the CLI as a user would; returns the CompletedProcess."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    env.pop("COURSE_ROOT", None)
    return subprocess.run([str(BIN / "autograder"), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
