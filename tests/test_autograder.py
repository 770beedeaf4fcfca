"""The instructor's road on the toy course: release, validate, mutants, grade, check."""
import csv
import json

import nbformat
import pytest

from autograder import notebooks
from conftest import autograder, copy_toy_course

SOURCE = "notebooks/00_toy/00_toy.ipynb"


def _release_nb(root):
    return notebooks.student_version(notebooks.read(root / SOURCE))


def _submit(folder, student, nb, name="00_toy.ipynb"):
    path = folder / student / "00_toy" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _answered(root, **overrides):
    source = notebooks.read(root / SOURCE)
    return notebooks.fill(_release_nb(root), {**notebooks.answers(source), **overrides})


def test_release_is_stripped_and_locked(toy_course):
    out = autograder("release", cwd=toy_course)
    assert out.returncode == 0, out.stderr
    released = (toy_course / "release/00_toy/00_toy.ipynb").read_text()
    for secret in ("BEGIN SOLUTION", "return a + b", "HIDDEN", "add(-5, 5)"):
        assert secret not in released
    assert "raise NotImplementedError()" in released and '"editable": false' in released
    assert (toy_course / "release/course_utils/__init__.py").exists()
    assert (toy_course / "release/README.md").exists()


def test_validate_and_mutants_pass_on_a_good_course(toy_course):
    for command in ("validate", "mutants"):
        out = autograder(command, "--workers", 2, cwd=toy_course)
        assert out.returncode == 0, out.stdout + out.stderr
    assert "4 of 4 mutants caught" in out.stdout


def test_mutants_fails_when_a_mutant_is_not_caught(toy_course):
    (toy_course / "autograder/mutants/00_toy/square__harmless.py").write_text("def square(x):\n    return x ** 2\n")
    out = autograder("mutants", cwd=toy_course)
    assert out.returncode == 1
    assert "square__harmless: NOT caught by test_square" in out.stderr


def test_validate_fails_when_the_source_is_wrong(toy_course):
    path = toy_course / SOURCE
    path.write_text(path.read_text().replace("return x * x", "return x + x"))
    out = autograder("validate", cwd=toy_course)
    assert out.returncode == 1 and "does not pass its own tests" in out.stderr


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """One batch with honest, wrong, broken and hostile submissions, graded once for this module."""
    tmp_path = tmp_path_factory.mktemp("class")
    toy_course = copy_toy_course(tmp_path)
    subs = tmp_path / "submitted"
    release = _release_nb(toy_course)
    _submit(subs, "alice", _answered(toy_course))
    _submit(subs, "bob", release)
    _submit(subs, "carol", _answered(toy_course, add="def add(a, b):\n    return a - b\n"))
    # dave deleted the square test and moved the square answer first
    dave = _answered(toy_course)
    dave.cells = [c for c in dave.cells if notebooks.grade_id(c) != "test_square"]
    dave.cells.insert(0, dave.cells.pop(next(i for i, c in enumerate(dave.cells) if notebooks.grade_id(c) == "square")))
    _submit(subs, "dave", dave)
    erin = _answered(toy_course)
    next(c for c in erin.cells if notebooks.grade_id(c) == "test_square").source = "pass"
    _submit(subs, "erin", erin)
    (subs / "frank/00_toy").mkdir(parents=True)
    (subs / "frank/00_toy/00_toy.ipynb").write_text(json.dumps(_answered(toy_course))[:500])
    _submit(subs, "grace", _answered(toy_course, square="def square(x):\n    return x * x\nwhile True:\n    pass\n"))
    _submit(subs, "heidi", _answered(toy_course, square="import os\nos._exit(1)\n"))
    _submit(subs, "ivan", _answered(toy_course, add="import sys\ndef add(a, b):\n    print('debug', file=sys.stderr)\n    return a + b\n"))
    (subs / "judy/00_toy").mkdir(parents=True)
    wrong = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    _submit(subs, "kate", wrong)
    _submit(subs, "mallory", _answered(toy_course, add="def add(a, b):\n    return 3 if (a, b) == (1, 2) else 0\n"))
    nbformat.write(_answered(toy_course), str(subs / "leo_00_toy.ipynb"))  # an LMS download's flat name
    out = tmp_path / "grading"
    run = autograder("grade", subs, "--out", out, "--workers", 2, "--cell-timeout", 5, cwd=toy_course)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        grades = {row["student_id"]: row for row in csv.DictReader(handle)}
    return subs, out, grades, toy_course


EXPECTED = {  # student: (score, status); toy course: add 2, square 1, double_array 2
    "alice": (5, "graded"), "bob": (0, "graded"), "carol": (3, "graded"), "dave": (5, "graded"),
    "erin": (5, "tampered"), "frank": (0, "invalid_notebook"), "grace": (4, "timeout"),
    "heidi": (4, "crashed"), "ivan": (5, "graded"), "judy": (0, "missing"), "kate": (0, "invalid_notebook"),
    "mallory": (3, "graded"), "leo": (5, "graded"),
}


def test_every_submission_gets_the_right_grade_and_status(graded_class):
    subs, out, grades, root = graded_class
    assert set(grades) == set(EXPECTED)
    for student, (score, status) in EXPECTED.items():
        row = grades[student]
        assert (float(row["score"]), row["status"]) == (score, status), (student, row)
        assert float(row["max_score"]) == 5
    assert "restored from the source" in grades["dave"]["message"]
    assert "reordered" in grades["dave"]["message"]
    assert "test_square" in grades["erin"]["message"]
    assert "square" in grades["grace"]["message"] and "square" in grades["heidi"]["message"]
    assert "not a readable notebook" in grades["frank"]["message"]
    assert "wrong notebook" in grades["kate"]["message"]

    with open(out / "scores.csv", encoding="utf-8-sig") as handle:
        scores = list(csv.DictReader(handle))
    tests = ("test_add", "test_square", "test_double_array")
    assert {(r["student_id"], r["test"]) for r in scores} == {(s, t) for s in EXPECTED for t in tests}
    carol = {r["test"]: float(r["score"]) for r in scores if r["student_id"] == "carol"}
    assert carol == {"test_add": 0, "test_square": 1, "test_double_array": 2}
    # not a terminal: one line per submission on stdout, and the same lines in grading.log
    log = [line for line in (out / "grading.log").read_text().splitlines() if not line.startswith("#")]
    assert sorted(line.split("/")[0] for line in log) == sorted(EXPECTED)
    assert any(line.startswith("grace/00_toy") and " timeout " in line for line in log), log


def test_feedback_is_built_from_results_without_test_source(graded_class):
    subs, out, grades, root = graded_class
    carol = (out / "feedback/carol/00_toy.html").read_text()
    assert "add(1, 2) should be 3, got -1" in carol  # the visible test's teaching message
    mallory = (out / "feedback/mallory/00_toy.html").read_text()
    assert "AssertionError" in mallory
    for secret in ("0.25", "-5", "HIDDEN", "assert", str(root)):
        assert secret not in mallory, secret


def test_regrading_is_idempotent_and_reuses_results(graded_class):
    subs, out, grades, root = graded_class
    before = (out / "grades.csv").read_text()
    stored = {p: p.stat().st_mtime_ns for p in out.glob("results/*/*.json")}
    run = autograder("grade", subs, "--out", out, "--workers", 2, "--cell-timeout", 5, cwd=root)
    assert run.returncode == 0
    assert (out / "grades.csv").read_text() == before
    assert {p: p.stat().st_mtime_ns for p in out.glob("results/*/*.json")} == stored, "results were not reused"
    # a changed submission is graded again
    _submit(subs, "bob", _answered(root))
    run = autograder("grade", subs, "--out", out, "--workers", 2, "--cell-timeout", 5, cwd=root)
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        assert {r["student_id"]: r["score"] for r in csv.DictReader(handle)}["bob"] == "5"


def test_student_self_check_uses_visible_tests(toy_course, tmp_path):
    path = _submit(tmp_path, "me", _answered(toy_course, add="def add(a, b):\n    return 3 if (a, b) == (1, 2) else 0\n"))
    out = autograder("check", path, cwd=toy_course)
    assert out.returncode == 0 and "visible tests: 5/5" in out.stdout  # hidden tests are not run
    path = _submit(tmp_path, "me", _release_nb(toy_course))
    out = autograder("check", path, cwd=toy_course)
    assert out.returncode == 1 and "NotImplementedError" in out.stdout


def test_an_answer_that_imports_a_setup_name_again_keeps_full_marks_in_check_and_grade(toy_course, tmp_path):
    """`import numpy as np` again in an answer cell (a common style) rebinds a name the setup cell
    defines; the tests' own `np` outside `with student:` is the judge's, in the self-check as in grading."""
    answer = "import numpy as np\n\ndef double_array(x):\n    return np.multiply(x, 2.0)\n"
    path = _submit(tmp_path / "submitted", "me", _answered(toy_course, double_array=answer))
    out = autograder("check", path, cwd=toy_course)
    assert out.returncode == 0 and "visible tests: 5/5" in out.stdout, out.stdout
    run = autograder("grade", tmp_path / "submitted", "--out", tmp_path / "out", "--no-canary", cwd=toy_course)
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "out" / "grades.csv", encoding="utf-8-sig") as handle:
        assert [(r["score"], r["status"]) for r in csv.DictReader(handle)] == [("5", "graded")]


def test_demo_prints_the_grade_table(toy_course):
    out = autograder("demo", "--workers", 2, cwd=toy_course)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    table = {line.split()[0]: line.split()[2] for line in lines if line.split()[:1] and line.split()[0] in
             ("reference", "bare", "mutant_add__minus")}
    assert table == {"reference": "5/5", "bare": "0/5", "mutant_add__minus": "3/5"}
    assert (toy_course / "demo/grading/grades.csv").exists()


def test_report_lists_exercises_and_who_needs_a_look(graded_class):
    subs, out, grades, root = graded_class
    page = (out / "report.html").read_text()
    assert (out / "exercises.png").stat().st_size > 1000
    assert "test_double_array" in page and "Needs a human look" in page
    for student in ("erin", "frank", "grace", "heidi", "judy", "kate"):  # every status other than graded
        assert f"{student}</a></td>" in page and f"href='feedback/{student}/" in page  # linked to the feedback
    assert ">alice</a>" not in page


def _small_batch(root, folder, students):
    source = notebooks.read(root / SOURCE)
    for student, overrides in students.items():
        _submit(folder, student, notebooks.fill(_release_nb(root), {**notebooks.answers(source), **overrides}))


def test_manual_grades_survive_a_regrade(toy_course, tmp_path):
    from nbgrader.api import Gradebook
    subs, out = tmp_path / "subs", tmp_path / "out"
    _small_batch(toy_course, subs, {"ann": {"add": "def add(a, b):\n    return a - b\n"}, "ben": {}})
    assert autograder("grade", subs, "--out", out, cwd=toy_course).returncode == 0
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:  # a grader gives ann 1 of 2 by hand
        grade = gb.find_grade("test_add", "00_toy", "00_toy", "ann")
        assert grade.auto_score == 0
        grade.manual_score = 1.0
        gb.db.commit()
    (out / "results").rename(tmp_path / "old-results")  # force a full re-grade
    run = autograder("grade", subs, "--out", out, cwd=toy_course)
    assert run.returncode == 0, run.stderr
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        rows = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert rows["ann"]["score"] == "4" and "manual grade kept for test_add" in rows["ann"]["message"]
    assert rows["ben"]["score"] == "5"


def test_late_submissions_against_a_time_zone_aware_due_date(toy_course, tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    _small_batch(toy_course, subs, {"early": {}, "late": {}, "naive": {}})
    (subs / "early/00_toy/timestamp.txt").write_text("2026-12-01 22:30:00+00:00")   # 23:30 in Paris
    (subs / "late/00_toy/timestamp.txt").write_text("2026-12-01 23:30:00+00:00")    # 00:30 in Paris
    (subs / "naive/00_toy/timestamp.txt").write_text("2026-12-02 00:15:00")         # read in the due date's zone
    run = autograder("grade", subs, "--out", out, "--due", "2026-12-01T23:59:00+01:00", cwd=toy_course)
    assert run.returncode == 0, run.stderr
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        rows = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert rows["early"]["late_minutes"] == "0"
    assert rows["late"]["late_minutes"] == "31" and "late by 31 min" in rows["late"]["message"]
    assert rows["naive"]["late_minutes"] == "16"
    assert rows["late"]["score"] == "5"  # lateness is reported, not a penalty
    bad = autograder("grade", subs, "--out", out, "--due", "2026-12-01T23:59:00", cwd=toy_course)
    assert bad.returncode != 0 and "time zone" in bad.stderr


def test_an_lms_zip_of_flat_files(toy_course, tmp_path):
    import zipfile
    source = notebooks.read(toy_course / SOURCE)
    good = nbformat.writes(notebooks.fill(_release_nb(toy_course), notebooks.answers(source)))
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zoe_00_toy.ipynb", good)
        zf.writestr(zipfile.ZipInfo("=cmd_00_toy.ipynb"), good)       # graded: the gradebook takes it; escaped in the CSV
        zf.writestr(zipfile.ZipInfo("../evil_00_toy.ipynb"), good)    # path traversal: ignored
        zf.writestr("notes_for_grader.txt", "hello")                  # names no student: listed, not graded
    out = tmp_path / "out"
    run = autograder("grade", archive, "--out", out, cwd=toy_course)
    assert run.returncode == 0, run.stderr
    assert "notes_for_grader.txt" in run.stderr and "notes_for_grader.txt" in (out / "report.html").read_text()
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["student_id"], r["score"], r["status"]) for r in rows] == [("'=cmd", "5", "graded"), ("zoe", "5", "graded")]
    assert not (tmp_path / "evil_00_toy.ipynb").exists()


def test_the_release_check_catches_a_leak(toy_course):
    from autograder.cli import check_stripped
    source = notebooks.read(toy_course / SOURCE)
    check_stripped(source, _release_nb(toy_course), "00_toy")
    leaky = _release_nb(toy_course)
    next(c for c in leaky.cells if notebooks.grade_id(c) == "test_double_array").source += "\n    y = rng.normal(size=shape)"
    with pytest.raises(SystemExit, match="rng.normal"):
        check_stripped(source, leaky, "00_toy")
    unstripped = notebooks.fill(_release_nb(toy_course), notebooks.answers(source))
    with pytest.raises(SystemExit, match="BEGIN SOLUTION"):
        check_stripped(source, unstripped, "00_toy")


def test_without_namespaces_grades_the_same_and_warns(toy_course, tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    _small_batch(toy_course, subs, {"ok": {}, "wrong": {"add": "def add(a, b):\n    return a - b\n"},
                                    "crash": {"square": "import os\nos._exit(1)\n"}})
    run = autograder("grade", subs, "--out", out, cwd=toy_course, env={"AUTOGRADER_ISOLATION": "rlimits"})
    assert run.returncode == 0, run.stderr
    assert "WARNING: student code ran with rlimits only" in run.stderr
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        rows = {r["student_id"]: (r["score"], r["status"]) for r in csv.DictReader(handle)}
    assert rows == {"ok": ("5", "graded"), "wrong": ("3", "graded"), "crash": ("4", "crashed")}


def test_changing_the_source_regrades(toy_course, tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    _small_batch(toy_course, subs, {"amy": {"square": "def square(x):\n    return x * abs(x)\n"}})
    assert autograder("grade", subs, "--out", out, cwd=toy_course).returncode == 0
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        assert next(csv.DictReader(handle))["score"] == "4"  # square(-3) is not -9
    source = toy_course / SOURCE
    source.write_text(source.read_text().replace("got = square(-3), square(0)", "got = square(3), square(0)"))
    assert autograder("grade", subs, "--out", out, cwd=toy_course).returncode == 0
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        assert next(csv.DictReader(handle))["score"] == "5"  # graded against the changed test


def test_a_test_that_fails_the_reference_stops_grading_before_anyone_is_graded(toy_course, tmp_path):
    """The canary: each assignment's reference is graded first, where the class will be."""
    subs, out = tmp_path / "subs", tmp_path / "out"
    _small_batch(toy_course, subs, {"amy": {}})
    source = toy_course / SOURCE
    source.write_text(source.read_text().replace("assert got == (9, 0)", "assert got == (9, 1)"))
    run = autograder("grade", subs, "--out", out, cwd=toy_course)
    assert run.returncode != 0 and "the reference answers do not pass in grading here" in run.stderr, run.stderr
    assert "test_square" in run.stderr and not (out / "grades.csv").exists()
    assert autograder("grade", subs, "--out", out, "--no-canary", cwd=toy_course).returncode == 0


def test_similarity_lists_the_pair_that_shares_its_own_code(toy_course, tmp_path):
    """Two answers that differ only in names are listed side by side; an answer written
    independently, and the reference's own code, are not."""
    long_add = ("def add(a, b):\n    total = 0\n    for value in [a, b]:\n        if value is None:\n"
                "            raise ValueError('no value given')\n        total = total + value\n"
                "    result = total if total is not None else 0\n    return result\n")
    renamed = long_add.replace("total", "acc").replace("value", "item").replace("result", "out")
    other = ("def add(a, b):\n    parts = (a, b)\n    if any(p is None for p in parts):\n"
             "        raise TypeError('add needs two numbers')\n    return sum(parts[1:], parts[0])\n")
    source = notebooks.read(toy_course / SOURCE)
    folder = tmp_path / "submitted"
    padded = long_add + "# the grader tokenizes this in its own process\n" * 500   # over 20,000 characters
    for student, add in {"ann": long_add, "ben": renamed, "cy": other, "dee": None, "eve": padded}.items():
        answers = notebooks.answers(source) if add is None else {**notebooks.answers(source), "add": add}
        _submit(folder, student, notebooks.fill(_release_nb(toy_course), answers))
    out = tmp_path / "similar"
    run = autograder("similarity", folder, "--out", out, cwd=toy_course)
    assert run.returncode == 0, run.stderr
    with open(out / "similarity.csv", encoding="utf-8-sig") as handle:
        rows = [(r["cell"], r["student_a"], r["student_b"]) for r in csv.DictReader(handle)]
    assert rows == [("add", "ann", "ben")]  # eve's copy is too long to be compared: not tokenized at all
    page = (out / "similarity.html").read_text()
    assert "<mark>" in page and "never a penalty" in page


def test_what_students_control_reaches_the_reports_as_text(toy_course, tmp_path):
    """A folder name, an error message and copied code are the students' text: report.html,
    similarity.html and feedback show them escaped, grades.xlsx keeps them as text (no formula)."""
    from openpyxl import load_workbook

    hostile = "<img src=x onerror=alert(1)>"
    copied = ("def add(a, b):\n    marker = '</pre><script>alert(2)</script>'\n    total = 0\n"
              "    for value in [a, b]:\n        if value is None:\n            raise ValueError(marker)\n"
              "        total = total + value\n    result = total if total is not None else 0\n"
              "    raise ValueError('<script>alert(3)</script>' + str(result))\n")
    source = notebooks.read(toy_course / SOURCE)
    folder = tmp_path / "submitted"
    for student in (hostile, "=HYPERLINK(\"x\")", "pat"):
        _submit(folder, student, notebooks.fill(_release_nb(toy_course), {**notebooks.answers(source), "add": copied}))
    out = tmp_path / "out"
    run = autograder("grade", folder, "--out", out, cwd=toy_course)
    assert run.returncode == 0, run.stderr
    pages = [(out / "report.html").read_text(), *(p.read_text() for p in (out / "feedback").rglob("*.html"))]
    assert "alert(3)" in pages[0]  # the most common message is shown, as text
    for page in pages:
        assert "<script" not in page and "<img src=x" not in page and "</pre><script" not in page
    assert "pair(s) of answers" in pages[0] and "&lt;/pre&gt;&lt;script&gt;" in pages[0]  # the copies, escaped
    sheet = load_workbook(out / "grades.xlsx").active
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    assert "=HYPERLINK(\"x\")" in [c.value for c in next(sheet.iter_cols(min_col=1, max_col=1))]
