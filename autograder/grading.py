"""Grade one submission (in a worker process) and a whole class (a pool of workers).

Per submission: read the notebook (a broken file is `invalid_notebook`), assemble the graded
notebook from the source (tests and read-only cells restored, answers and free cells kept), run it
in a fresh kernel in a throw-away folder in the fast profile on the CPU, and score each test cell
with nbgrader's rule (stderr output does not zero a cell here). The result is one JSON file per
submission, so a batch that is stopped and started again only grades what is left.
"""
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader.utils import determine_grade

from . import course, notebooks
from .execute import run_notebook

STATUSES = ("graded", "timeout", "crashed", "invalid_notebook", "tampered", "missing")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
GRADING_ENV = {
    "COURSE_PROFILE": "fast", "COURSE_DEVICE": "cpu", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore",
}
DEFAULT_CELL_TIMEOUT = 60
DEFAULT_SUBMISSION_TIMEOUT = 600


def score_cell(cell):
    """(score, max_score, error message or None) for an executed test cell: nbgrader's rule, except
    that stderr output (a warning) does not cost the points."""
    scored = cell.copy()
    scored.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    score, max_score = determine_grade(scored)
    error = next((o for o in cell.outputs if o.output_type == "error"), None)
    message = None
    if error is not None:
        message = ANSI.sub("", f"{error.ename}: {error.evalue}")[:1000]
    return float(score or 0), float(max_score), message


def _result(student, assignment, status, message, tests=(), notes=(), source_tests=None):
    tests = list(tests)
    if not tests and source_tests is not None:
        tests = [{"test": notebooks.grade_id(c), "score": 0.0, "max_score": float(c.metadata.nbgrader.points),
                  "error": None} for c in source_tests]
    return {"student_id": student, "assignment": assignment, "status": status, "message": message,
            "score": sum(t["score"] for t in tests), "max_score": sum(t["max_score"] for t in tests),
            "tests": tests, "notes": list(notes)}


def grade_notebook(student, assignment, path, *, only_tests=False, cell_timeout=DEFAULT_CELL_TIMEOUT,
                   submission_timeout=DEFAULT_SUBMISSION_TIMEOUT, save_to=None):
    """Grade one submitted notebook file; returns the result dict (never raises for a bad submission)."""
    source_nb = notebooks.read(course.source_notebook(assignment))
    source_tests = notebooks.tests(source_nb)
    if path is None or not Path(path).is_file():
        return _result(student, assignment, "missing", f"no notebook submitted for {assignment}",
                       source_tests=source_tests)
    try:
        submitted = nbformat.read(str(path), as_version=4)
        nbformat.validate(submitted)
    except Exception as exc:  # any unreadable file is the student's, not the batch's, problem
        return _result(student, assignment, "invalid_notebook",
                       f"{Path(path).name} is not a readable notebook: {type(exc).__name__}: {str(exc)[:300]}",
                       source_tests=source_tests)
    if not set(notebooks.answers(submitted)) & set(notebooks.answers(source_nb)):
        return _result(student, assignment, "invalid_notebook",
                       f"{Path(path).name} has none of {assignment}'s answer cells: wrong notebook submitted?",
                       source_tests=source_tests)

    graded, notes, tampered = notebooks.assemble(source_nb, submitted)
    only = (lambda cell: notebooks.grade_id(cell) is not None) if only_tests else None
    deadline = time.monotonic() + submission_timeout
    with tempfile.TemporaryDirectory(prefix="grade-") as workdir:
        run = run_notebook(graded, cwd=workdir, env=GRADING_ENV, cell_timeout=cell_timeout,
                           deadline=deadline, only=only)
    tests = []
    for cell in notebooks.tests(graded):
        score, max_score, error = score_cell(cell)
        tests.append({"test": notebooks.grade_id(cell), "score": score, "max_score": max_score, "error": error})
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(graded, str(save_to))

    messages = list(notes)
    status = "graded"
    for kind in ("crashed", "timeout"):  # a crash outranks a timeout when both happened
        cells = [gid or f"cell {index + 1}" for k, index, gid in run.events if k == kind]
        if cells:
            status = kind if status == "graded" else status
            messages.insert(0, f"{kind} in {', '.join(dict.fromkeys(cells))}; the other cells were graded")
    if tampered:
        status = "tampered" if status == "graded" else status
        messages.insert(0, f"edited read-only cells {', '.join(tampered)}; graded with the originals")
    return _result(student, assignment, status, "; ".join(messages), tests, notes)


def file_digest(path):
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main():
    """Worker entry point: `python -m autograder.grading JOB.json` writes the job's result file."""
    job = json.loads(Path(sys.argv[1]).read_text())
    result = grade_notebook(job["student_id"], job["assignment"], job["path"], only_tests=job["only_tests"],
                            cell_timeout=job["cell_timeout"], submission_timeout=job["submission_timeout"],
                            save_to=job.get("save_to"))
    result["digest"] = job["digest"]
    out = Path(job["result"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)  # all or nothing: a killed worker leaves no half-written result


if __name__ == "__main__":
    main()
