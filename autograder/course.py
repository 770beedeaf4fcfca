"""Where the course lives: the source notebooks (nbgrader's source/ folder) and their assignments."""
import importlib.util
import os
from pathlib import Path


def course_root():
    """The folder holding notebooks/: $COURSE_ROOT, else the nearest parent of the working
    directory that has one, else the checkout this package was installed from."""
    if os.environ.get("COURSE_ROOT"):
        return Path(os.environ["COURSE_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in [here, *here.parents]:
        if (folder / "notebooks").is_dir() and (folder / "autograder").is_dir():
            return folder
    return Path(__file__).resolve().parents[1]


def course_utils_dir():
    """The installed course_utils package's folder, found without importing it (and torch)."""
    return Path(importlib.util.find_spec("course_utils").origin).parent


def source_dir():
    return course_root() / "notebooks"


def mutants_dir():
    return course_root() / "autograder" / "mutants"


def assignments():
    """Every assignment: a folder of notebooks/ holding exactly one notebook."""
    return sorted(p.name for p in source_dir().iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def source_notebook(assignment):
    notebooks = sorted((source_dir() / assignment).glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no assignment {assignment!r}: expected a notebook in {source_dir() / assignment}; "
                         f"known assignments: {', '.join(assignments())}")
    if len(notebooks) > 1:
        raise SystemExit(f"assignment {assignment!r} has several notebooks; the course uses one per assignment")
    return notebooks[0]


def pick(names):
    """The assignments named on the command line (all when none), checked to exist."""
    known = assignments()
    for name in names:
        if name not in known:
            raise SystemExit(f"unknown assignment {name!r}; known: {', '.join(known)}")
    return list(names) or known
