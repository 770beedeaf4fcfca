"""The grades in nbgrader's gradebook (DIR/gradebook.db), so that a grader's manual scores win.

Auto scores go into `Grade.auto_score`; a grader may set `manual_score` (nbgrader's formgrader or
its Python API), and the reported score is nbgrader's `Grade.score`: the manual score where there
is one. Grading again only rewrites auto scores, so manual grades survive a re-grade.
"""
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.utils import compute_checksum

from . import course, notebooks


def _register(gb, assignment, duedate):
    path = course.source_notebook(assignment)
    source = notebooks.read(path)
    gb.update_or_create_assignment(assignment, duedate=duedate)
    gb.update_or_create_notebook(path.stem, assignment)
    for cell in source.cells:
        gid = notebooks.grade_id(cell)
        if gid is None:
            continue
        gb.update_or_create_source_cell(gid, path.stem, assignment, cell_type=cell.cell_type,
                                        locked=bool(cell.metadata.nbgrader.get("locked")), source=cell.source,
                                        checksum=compute_checksum(cell))
        if notebooks.is_test(cell):
            gb.update_or_create_grade_cell(gid, path.stem, assignment, cell_type="code",
                                           max_score=float(cell.metadata.nbgrader.points))
        if notebooks.is_answer(cell):
            gb.update_or_create_solution_cell(gid, path.stem, assignment)
    return path.stem


def prepare(out):
    """Create the gradebook's tables (nbgrader runs its migrations, about a second): called in a
    thread while the class is graded, so that `record` finds them ready."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}"):
        pass


def record(results, out, duedate=None):
    """Store auto scores; replace each test's score in `results` by the gradebook's (manual first)."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        notebook_ids = {a: _register(gb, a, duedate) for a in sorted({r["assignment"] for r in results})}
        for r in results:
            if r["status"] == "invalid_id":
                continue  # a name the gradebook cannot take: the row is in grades.csv and the report
            assignment, student, nb_id = r["assignment"], r["student_id"], notebook_ids[r["assignment"]]
            gb.update_or_create_student(student)
            try:
                gb.find_submission(assignment, student)
            except MissingEntry:
                # nbgrader builds the submission's notebooks and grades while the new submission is not
                # yet in the session; an autoflush in between makes SQLAlchemy 2 warn and skip the
                # backref adds (nbgrader adds the objects itself right after)
                with gb.db.no_autoflush:
                    gb.add_submission(assignment, student, timestamp=r.get("submitted_at"))
            manual = []
            for test in r["tests"]:
                grade = gb.find_grade(test["test"], nb_id, assignment, student)
                grade.auto_score = test["score"]
                grade.needs_manual_grade = grade.manual_score is not None
                if grade.manual_score is not None and grade.score != test["score"]:
                    manual.append(test["test"])
                    test["score"] = float(grade.score)
            gb.db.commit()
            if manual:
                r["score"] = sum(t["score"] for t in r["tests"])
                r["message"] = "; ".join(filter(None, [r["message"], f"manual grade kept for {', '.join(manual)}"]))
    return results
