"""Grade a class: find the submissions, grade each in its own worker process, write the reports."""
import json
import os
import re
import shutil
import queue
import time
import zipfile
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import course
from .grading import file_digest, grade_notebook

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")


class Submission:
    def __init__(self, student_id, assignment, path, note=""):
        self.student_id, self.assignment, self.path, self.note = student_id, assignment, path, note

    @property
    def key(self):
        return f"{self.student_id}/{self.assignment}"


def unzip(archive, target, tz):
    """Extract an LMS download safely (no absolute paths, no '..'), keeping each file's time: a zip
    stores local times without a zone, so they are read in `tz` (the due date's zone)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = Path(info.filename)
            if info.is_dir() or name.is_absolute() or ".." in name.parts:
                continue
            dest = target / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            stamp = datetime(*info.date_time, tzinfo=tz).timestamp()
            os.utime(dest, (stamp, stamp))
    return target


def submitted_at(sub, tz):
    """When a submission was handed in: nbgrader's timestamp.txt beside it if there is one (a time
    without a zone is read in `tz`), else the file's modification time."""
    if sub.path is None:
        return None
    stamp = Path(sub.path).parent / "timestamp.txt"
    if stamp.is_file():
        from dateutil import parser
        try:
            when = parser.parse(stamp.read_text().strip())
            return when if when.tzinfo else when.replace(tzinfo=tz)
        except (ValueError, OverflowError):
            pass
    return datetime.fromtimestamp(Path(sub.path).stat().st_mtime, timezone.utc)


def collect(root, assignments, explicit=False):
    """Submissions under `root`: the tree <student>/<assignment>/<notebook>.ipynb, or flat files
    <student>_<assignment>.ipynb (an LMS download). With `explicit`, a student without one of the
    assignments gets a `missing` row."""
    root = Path(root)
    subs, skipped = {}, []
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix == ".ipynb":
            match = next((a for a in assignments if entry.stem.endswith(f"_{a}")), None)
            student = entry.stem[: -len(match) - 1] if match else None
            if not match or not student or not SAFE_ID.match(student):
                skipped.append(f"{entry.name}: not named <student_id>_<assignment>.ipynb")
                continue
            subs[f"{student}/{match}"] = Submission(student, match, entry)
        elif entry.is_dir() and not entry.name.startswith("."):
            if not SAFE_ID.match(entry.name):
                skipped.append(f"{entry.name}/: not a valid student id")
                continue
            for folder in sorted(p for p in entry.iterdir() if p.is_dir()):
                if folder.name not in assignments:
                    skipped.append(f"{entry.name}/{folder.name}: not one of the assignments graded")
                    continue
                found = sorted(folder.glob("*.ipynb"))
                expected = course.source_notebook(folder.name).name
                path = next((p for p in found if p.name == expected), found[0] if found else None)
                note = f"{len(found)} notebooks submitted; graded {path.name}" if len(found) > 1 else ""
                subs[f"{entry.name}/{folder.name}"] = Submission(entry.name, folder.name, path, note)
    if explicit:
        students = sorted({s.student_id for s in subs.values()})
        for student in students:
            for assignment in assignments:
                subs.setdefault(f"{student}/{assignment}", Submission(student, assignment, None))
    return [subs[k] for k in sorted(subs)], skipped


def _grade_one(sub, out, slots, hide, options):
    result_path = out / "results" / sub.student_id / f"{sub.assignment}.json"
    # the submission and the source it is graded against: a fixed test re-grades everyone
    digest = f"{file_digest(sub.path)}:{file_digest(course.source_notebook(sub.assignment))}"
    if result_path.exists():
        try:
            old = json.loads(result_path.read_text())
            if old.get("digest") == digest:
                return old  # same file, same tests: re-running a batch is idempotent
        except ValueError:
            pass
    slot = slots.get()
    tic = time.perf_counter()
    try:
        result = grade_notebook(sub.student_id, sub.assignment, sub.path, slot=slot, hide=hide,
                                save_to=out / "autograded" / sub.student_id / sub.assignment / f"{sub.assignment}.ipynb",
                                **options)
    except Exception as exc:  # never a silent zero: a row that says the grader itself failed
        result = {"student_id": sub.student_id, "assignment": sub.assignment, "status": "crashed",
                  "message": f"the grader failed: {type(exc).__name__}: {exc}"[:400], "score": 0.0,
                  "max_score": 0.0, "tests": [], "notes": []}
    finally:
        slots.put(slot)
    result["wall_seconds"] = round(time.perf_counter() - tic, 3)
    if sub.note:
        result["message"] = "; ".join(filter(None, [sub.note, result["message"]]))
    result["digest"] = digest
    result_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, result_path)  # all or nothing: a killed batch leaves no half-written result
    return result


def grade_all(subs, out, workers=None, hide=(), progress=print, **options):
    """Grade every submission with `workers` in parallel; results in submission order."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    slots = queue.Queue()
    for slot in range(workers):
        slots.put(slot)
    hide = [*hide, out, course.course_root()]
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_grade_one, s, out, slots, hide, options) for s in subs]
        for sub, future in zip(subs, futures):
            result = future.result()
            results.append(result)
            if progress:
                progress(f"  {sub.key:<40} {result['status']:<16} {result['score']:g}/{result['max_score']:g}")
    return results
