"""Notebook surgery on nbgrader metadata: the student version, reference fills, and the graded
notebook assembled from a submission and the source."""
import copy

import nbformat
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions
from nbgrader.utils import is_grade, is_locked, is_solution


def grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_answer(cell):
    return cell.cell_type == "code" and is_solution(cell) and not is_grade(cell)


def is_test(cell):
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


def is_fixed(cell):
    """Cells the student may not change: tests and read-only cells (restored from the source)."""
    return grade_id(cell) is not None and (is_test(cell) or (is_locked(cell) and not is_solution(cell)))


def read(path):
    return nbformat.read(str(path), as_version=4)


def tests(nb):
    return [cell for cell in nb.cells if is_test(cell)]


def answers(nb):
    return {grade_id(cell): cell.source for cell in nb.cells if is_answer(cell)}


class ClearSolutionsNamed(ClearSolutions):
    """nbgrader's ClearSolutions, with `{name}` in the stub replaced by the answer cell's grade_id,
    so an unanswered exercise says which one it is (nbgrader_config.py puts it in
    GenerateAssignment's pipeline in place of ClearSolutions)."""

    def preprocess_cell(self, cell, resources, index):
        stub = self.code_stub
        self.code_stub = {language: text.replace("{name}", grade_id(cell) or "this exercise")
                          for language, text in stub.items()}
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            self.code_stub = stub


def student_version(source_nb):
    """What students get: solutions replaced by stubs, hidden tests removed, outputs cleared
    (nbgrader's own preprocessors, the ones `generate_assignment` runs)."""
    nb = copy.deepcopy(source_nb)
    for preprocessor in (ClearSolutionsNamed(config=_config()), ClearHiddenTests(), ClearOutput()):
        nb, _ = preprocessor.preprocess(nb, {})
    return nb


def _config():
    """The course's nbgrader_config.py (the stub's text lives there), when there is one."""
    from traitlets.config import Config, PyFileConfigLoader

    from . import course

    path = course.course_root() / "nbgrader_config.py"
    if not path.is_file():
        return Config()
    try:
        return PyFileConfigLoader(path.name, str(path.parent)).load_config()
    except Exception:
        return Config()


def visible_only(nb):
    """A copy without hidden tests (for a student's self-check)."""
    nb, _ = ClearHiddenTests().preprocess(copy.deepcopy(nb), {})
    return nb


def fill(release_nb, sources):
    """The release with answer cells replaced by `sources` (grade_id -> code), as a student would submit it."""
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        if is_answer(cell) and grade_id(cell) in sources:
            cell.source = sources[grade_id(cell)]
    return nb


def _same(a, b):
    return a.strip().replace("\r\n", "\n") == b.strip().replace("\r\n", "\n")


def assemble(source_nb, submitted_nb):
    """The notebook to grade: the source's cells in the source's order, with the student's answer
    cells and their own free cells, and every test and read-only cell restored from the source.

    Returns (notebook, notes, tampered, unanswered): notes say what was missing or moved; tampered
    lists the read-only or test cells whose code differs from what the student was given; unanswered
    the answer cells still as released (or missing).
    """
    release = {grade_id(c): c for c in student_version(source_nb).cells if grade_id(c)}
    submitted_ids = {}
    attached = {None: []}  # free cells the student wrote, kept after the graded cell they followed
    current = None
    for cell in submitted_nb.cells:
        gid = grade_id(cell)
        if gid is not None and gid in release and gid not in submitted_ids:
            submitted_ids[gid] = cell
            current = gid
            attached[gid] = []
        elif cell.cell_type == "code":  # free code, or a copy of a graded cell: runs as the student's
            attached[current].append(nbformat.v4.new_code_cell(cell.source))

    notes, tampered, unanswered = [], [], []
    graded = nbformat.v4.new_notebook(metadata=copy.deepcopy(source_nb.metadata))
    graded.cells.extend(attached[None])
    seen = list(submitted_ids)
    if seen != [grade_id(c) for c in source_nb.cells if grade_id(c) in submitted_ids]:
        notes.append("cells were reordered; graded in the original order")
    for cell in source_nb.cells:
        gid = grade_id(cell)
        if gid is None:
            continue  # the source's own free cells (demos, text) come from the submission
        mine = submitted_ids.get(gid)
        new = copy.deepcopy(cell)
        new.outputs = [] if new.cell_type == "code" else new.get("outputs")
        if new.cell_type == "code":
            new.execution_count = None
        if is_answer(cell):
            if mine is None:
                notes.append(f"answer cell {gid} is missing; graded as unanswered")
                new.source = release[gid].source
            else:
                new.source = mine.source
            if _same(new.source, release[gid].source):
                unanswered.append(gid)
        elif is_fixed(cell) and mine is not None and (
                not _same(mine.source, release[gid].source)
                or mine.metadata.get("nbgrader", {}).get("points") != cell.metadata.nbgrader.get("points")
                or mine.cell_type != cell.cell_type):
            tampered.append(gid)
        elif is_test(cell) and mine is None:
            notes.append(f"test cell {gid} was missing; restored from the source")
        if new.cell_type == "markdown" and not is_fixed(cell) and mine is not None:
            new.source = mine.source
        graded.cells.append(new)
        graded.cells.extend(attached.get(gid, []))
    return graded, notes, tampered, unanswered



def secret_lines(nb):
    """Lines the source has only inside solution or hidden-test regions (stripped): what must never
    reach a student, in the release or in feedback."""
    inside_lines, outside_lines = set(), set()
    for cell in nb.cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN SOLUTION" in line or "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END SOLUTION" in line or "END HIDDEN TESTS" in line:
                inside = False
            else:
                (inside_lines if inside else outside_lines).add(line.strip())
    return {line for line in inside_lines - outside_lines if len(line) > 12}
