"""The real course: every notebook follows the conventions, releases clean, passes its own tests,
fails them all when bare, and catches every mutant on its own exercise only."""
import json
import re
from pathlib import Path

import pytest

from autograder import course, notebooks
from autograder.cli import check_stripped
from conftest import REPO, autograder

ASSIGNMENTS = course.assignments()


def test_there_are_assignments():
    assert "01_backprop" in ASSIGNMENTS


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_notebook_follows_the_conventions(assignment):
    path = course.source_notebook(assignment)
    assert path.name == f"{assignment}.ipynb"
    raw = json.loads(path.read_text())
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in raw["cells"] if c["cell_type"] == "code"), "store notebooks with outputs stripped"
    nb = notebooks.read(path)
    ids = [notebooks.grade_id(c) for c in nb.cells if notebooks.grade_id(c)]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    answers = list(notebooks.answers(nb))
    tests = [notebooks.grade_id(c) for c in notebooks.tests(nb)]
    assert answers, "no answer cells"
    assert sorted(tests) == sorted(f"test_{a}" for a in answers), "one test_<name> cell per answer"
    for cell in nb.cells:
        gid = notebooks.grade_id(cell)
        if notebooks.is_answer(cell):
            defined = re.findall(r"^(?:def|class) ([A-Za-z]\w*)", cell.source, flags=re.M)
            assert defined == [gid], f"answer cell {gid} must define exactly {gid}, defines {defined}"
            assert "### BEGIN SOLUTION" in cell.source
        if notebooks.is_test(cell):
            assert cell.metadata.nbgrader.get("locked") and cell.metadata.nbgrader.get("points", 0) > 0
    for answer in answers:
        folder = REPO / "autograder/mutants" / assignment
        mutants = [*folder.glob(f"{answer}__*.py"), *folder.glob(f"{answer}__*.diff")]
        assert len(mutants) >= 2, f"{answer} needs at least two mutants, has {len(mutants)}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_version_is_stripped(assignment):
    source = notebooks.read(course.source_notebook(assignment))
    release = notebooks.student_version(source)
    check_stripped(source, release, assignment)  # raises SystemExit with what leaked
    assert len(notebooks.tests(release)) == len(notebooks.tests(source))


@pytest.fixture(scope="module")
def release():
    """`autograder release` on the real course, once for the tests below."""
    out = autograder("release", cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    return REPO / "release"


def test_release_command_builds_the_student_bundle(release):
    for assignment in ASSIGNMENTS:
        text = (REPO / "release" / assignment / f"{assignment}.ipynb").read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert (REPO / "release/course_utils/training.py").exists()
    assert (REPO / "release/autograder/cli.py").exists()
    assert not list((REPO / "release").rglob("mutants")), "mutants are near-solutions: never in the release"
    pins = [line for line in (REPO / "requirements.lock").read_text().splitlines() if not line.startswith("#")]
    lock = (REPO / "release/requirements.lock").read_text()
    assert [line for line in lock.splitlines() if not line.startswith("#")] == pins
    assert "make" not in lock and ".ci" not in lock, "the student's lock speaks of the instructor's tools"


def test_the_student_bundle_offers_only_check_and_installs_the_student_jupyterlab(release, tmp_path):
    """`pip install .` of the release puts the JupyterLab settings without nbgrader's instructor
    tools into the environment; the bundle's `autograder` lists only `check`."""
    import subprocess
    import sys
    import zipfile

    run = subprocess.run([sys.executable, "-m", "autograder.cli", "--help"], cwd=REPO / "release",
                         capture_output=True, text=True)
    assert run.returncode == 0 and "{check}" in run.stdout, run.stdout + run.stderr  # argparse's choices
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(REPO / "release")], capture_output=True, text=True)
    assert wheel.returncode == 0, wheel.stdout + wheel.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    data = {n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n}
    assert data == {"etc/jupyter/labconfig/page_config.json",
                    "etc/jupyter/jupyter_server_config.d/nbgrader_student.json"}, names
    assert "autograder/student_bundle.py" in names and not any("mutants" in n for n in names)


def test_every_source_passes_its_release_fails_and_each_mutant_is_caught_on_its_own_exercise():
    """`autograder mutants` grades every notebook's reference, bare release and mutants in one batch
    (one fork server for all) and runs validate's checks on the same results."""
    out = autograder("mutants", "--workers", 2, cwd=REPO, timeout=3000)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"(\d+) of \1 mutants caught on their own test only", out.stdout), out.stdout


def test_a_crash_or_a_loop_in_the_first_exercise_costs_that_exercise_only(tmp_path):
    """01_backprop with its first answer killing the process, or looping for ever: the runner is
    replaced, every cell that had run (the setup cell included) is replayed, and only
    test_linear_forward's point is lost."""
    import csv

    import nbformat

    source = notebooks.read(course.source_notebook("01_backprop"))
    release = notebooks.student_version(source)
    answers = notebooks.answers(source)
    broken = {"crash": "import os\nos._exit(1)\n", "loop": "while True:\n    pass\n"}
    for student, first in broken.items():
        path = tmp_path / "in" / student / "01_backprop/01_backprop.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(notebooks.fill(release, {**answers, "linear_forward": first}), str(path))
    run = autograder("grade", tmp_path / "in", "--out", tmp_path / "out", "--workers", 2, "--cell-timeout", 5,
                     cwd=REPO, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "out/grades.csv", encoding="utf-8-sig") as handle:
        rows = {r["student_id"]: (float(r["score"]), r["status"]) for r in csv.DictReader(handle)}
    assert rows == {"crash": (14.0, "crashed"), "loop": (14.0, "timeout")}, rows


def test_jupyterlab_serves_the_release(release, tmp_path):
    """What `make lab` starts: JupyterLab on release/, which lists and opens every notebook."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    lab = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--notebook-dir", str(REPO / "release"),
                            "--no-browser", "--allow-root", "--ip", "127.0.0.1", f"--port={port}",
                            "--ServerApp.port_retries=0", "--IdentityProvider.token=t0ken",
                            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token=t0ken", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        page = urllib.request.urlopen(f"{base}/lab?token=t0ken", timeout=10).read().decode()
        assert "JupyterLab" in page
        for assignment in ASSIGNMENTS:
            url = f"{base}/api/contents/{assignment}/{assignment}.ipynb?token=t0ken"
            model = json.loads(urllib.request.urlopen(url, timeout=10).read())
            assert model["type"] == "notebook" and model["content"]["cells"]
    finally:
        lab.terminate()
        lab.wait(timeout=30)
