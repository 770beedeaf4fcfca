import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "course"
BIN = Path(sys.executable).parent


@pytest.fixture
def toy_course(tmp_path, monkeypatch):
    """A copy of the two-exercise toy course, used as the course root."""
    import shutil
    root = tmp_path / "course"
    shutil.copytree(TOY, root)
    monkeypatch.setenv("COURSE_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return root


def autograder(*args, cwd=None, env=None, timeout=600):
    """Run the CLI as a user would; returns the CompletedProcess."""
    return subprocess.run([str(BIN / "autograder"), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
