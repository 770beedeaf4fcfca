"""Grade a class: find the submissions, grade each in its own worker process (or on a Dask
cluster), write the reports."""
import ipaddress
import json
import os
import shutil
import queue
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
import zipfile
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import course, notebooks, sandbox
from .grading import _result, batch_modules, file_digest, grade_notebook

# The gradebook (nbgrader's, a String(128) primary key) takes nearly any text as a student id; these
# folder names it cannot take faithfully get a row with status `invalid_id` instead of a grade.
ID_LIMIT = 128


def id_problem(name):
    """Why a folder or file name cannot be a student id, or None: every other name nbgrader's gradebook
    accepts is graded as it is (unicode, spaces, leading zeros, '=' and '+' included)."""
    if name.startswith("."):
        return "a hidden folder (nbgrader's own student glob skips these; tools leave .ipynb_checkpoints and the like)"
    if name != name.strip():
        return "white space at the start or end (nbgrader strips it, so the id would not match the folder)"
    if len(name) > ID_LIMIT:
        return f"longer than {ID_LIMIT} characters (the gradebook's limit)"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "a control character or bytes that are not UTF-8"
    return None

class Submission:
    """One row of the grades: a student's hand-in of one assignment (`path` None when none was found;
    `refused`: why the folder's name cannot be a student id, and then nothing is graded)."""

    def __init__(self, student_id, assignment, path, note="", refused=None):
        self.student_id, self.assignment, self.path, self.note = student_id, assignment, path, note
        self.refused = refused

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
    """(when, note): when a submission was handed in, in UTC: nbgrader's timestamp.txt beside it if
    there is one (a time without a zone is read in `tz`), else the file's modification time; the note
    says why a timestamp.txt was not used (a bad one is that student's problem, never the batch's)."""
    if sub.path is None:
        return None, ""
    stamp, note = Path(sub.path).parent / "timestamp.txt", ""
    if stamp.is_file():
        from dateutil import parser
        try:
            text = stamp.read_text(errors="replace").strip()[:100]
            when = parser.parse(text)
            return (when if when.tzinfo else when.replace(tzinfo=tz)).astimezone(timezone.utc), ""
        except (ValueError, OverflowError, TypeError) as exc:
            note = f"timestamp.txt unreadable ({type(exc).__name__}); used the notebook file's time"
    return datetime.fromtimestamp(Path(sub.path).stat().st_mtime, timezone.utc), note


def _shown(path, root):
    return path.relative_to(root).as_posix() + ("/" if path.is_dir() else "")


def collect(root, assignments, explicit=False, complete=True):
    """Every hand-in under `root`, as (submissions, unmatched): the tree <student>/<assignment>/<notebook>.ipynb,
    or flat files <student>_<assignment>.ipynb (an LMS download).

    Every student folder ends as exactly one Submission per assignment graded: `assignments` when
    `explicit`, else those found anywhere in the tree (not `complete`: only the hand-ins found, for
    the samples of validate, mutants and demo). A hand-in without a notebook has path None and a
    note naming what was there; a folder whose name cannot be a student id (`id_problem`) is refused.
    `unmatched`: files at the top that name no student and assignment (each listed in the report)."""
    root = Path(root)
    found, notes, refused, unmatched = {}, {}, {}, []
    students = []
    for entry in sorted(root.iterdir()):
        if entry.is_file():
            match = next((a for a in assignments if entry.stem.endswith(f"_{a}")), None)
            student = entry.stem[: -len(match) - 1] if match else ""
            if entry.suffix != ".ipynb" or not student or id_problem(student):
                unmatched.append(entry.name)
                continue
            students.append(student)
            found[(student, match)] = (entry, "")
        elif entry.is_dir():
            students.append(entry.name)
            why = id_problem(entry.name)
            if why:
                refused[entry.name] = why
                continue
            others = []
            for item in sorted(entry.iterdir()):
                if item.is_dir() and item.name in assignments:
                    books = sorted(p for p in item.glob("*.ipynb") if p.is_file())  # a FIFO would block every read
                    expected = course.source_notebook(item.name).name
                    path = next((p for p in books if p.name == expected), books[0] if books else None)
                    if path is None:
                        there = sorted(_shown(p, root) for p in item.iterdir())
                        note = f"found {', '.join(there[:5])}{' ...' if len(there) > 5 else ''}" if there else \
                            f"the folder {_shown(item, root)} is empty"
                    else:
                        note = f"{len(books)} notebooks submitted; graded {path.name}" if len(books) > 1 else ""
                    found[(entry.name, item.name)] = (path, note)
                else:
                    others.append(_shown(item, root))
            if others:
                notes[entry.name] = f"also in the folder: {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}"
            elif not any(entry.iterdir()):
                notes[entry.name] = f"the folder {entry.name}/ is empty"
    graded = list(assignments) if explicit else [a for a in assignments if any(a == k[1] for k in found)]
    subs = {}
    for student in dict.fromkeys(students):
        for assignment in graded:
            if student in refused:
                shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in student)  # no raw control bytes
                subs[(student, assignment)] = Submission(shown, assignment, None, refused=refused[student])
                continue
            if not complete and (student, assignment) not in found:
                continue
            path, note = found.get((student, assignment), (None, ""))
            if path is None:
                note = "; ".join(filter(None, [note, notes.get(student, "")]))
            subs[(student, assignment)] = Submission(student, assignment, path, note)
    return [subs[k] for k in sorted(subs)], unmatched


def _result_path(sub, out):
    return out / "results" / sub.student_id / f"{sub.assignment}.json"


def _digest(sub):
    """The submission and the source it is graded against: a fixed test re-grades everyone."""
    return f"{file_digest(sub.path)}:{file_digest(course.source_notebook(sub.assignment))}"


def _stored(sub, out, digest):
    """The stored result of this very submission against this very source, or None."""
    result_path = _result_path(sub, out)
    if result_path.exists():
        try:
            old = json.loads(result_path.read_text())
            if old.get("digest") == digest:
                return old  # same file, same tests: re-running a batch is idempotent
        except ValueError:
            pass
    return None


def _store(sub, out, result, digest):
    if sub.note:
        result["message"] = "; ".join(filter(None, [result["message"], sub.note]))
    result["digest"] = digest
    result_path = _result_path(sub, out)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, result_path)  # all or nothing: a killed batch leaves no half-written result
    return result


def _row(sub, status, message):
    """A row with no grade (each test 0 of its points) that says why; never a silent zero."""
    try:
        tests = notebooks.tests(notebooks.read(course.source_notebook(sub.assignment)))
    except (Exception, SystemExit):  # the source itself is unreadable: a row all the same
        tests = []
    return _result(sub.student_id, sub.assignment, status, message[:400], source_tests=tests)


def _grader_failed(sub, why):
    return _row(sub, "crashed", why)


def _refused(sub):
    """The row of a folder whose name cannot be a student id: nothing graded, nothing stored."""
    result = _row(sub, "invalid_id", f"not graded: the folder name {sub.student_id!r} cannot be a student id: "
                                     f"{sub.refused}; rename the folder and grade again")
    result["wall_seconds"] = None
    return result


def _graded_path(sub, out):
    return out / "autograded" / sub.student_id / sub.assignment / f"{sub.assignment}.ipynb"


def _grade_one(sub, out, slots, options):
    if sub.refused:
        return _refused(sub)
    digest = _digest(sub)
    old = _stored(sub, out, digest)
    if old is not None:
        return old
    slot = slots.get()
    tic = time.perf_counter()
    try:
        result = grade_notebook(sub.student_id, sub.assignment, sub.path, slot=slot,
                                save_to=_graded_path(sub, out), **options)
    except Exception as exc:
        result = _grader_failed(sub, f"the grader failed: {type(exc).__name__}: {exc}")
    finally:
        slots.put(slot)
    result["wall_seconds"] = round(time.perf_counter() - tic, 3)
    return _store(sub, out, result, digest)


def grade_all(subs, out, workers=None, progress=None, scheduler=None, client=None, **options):
    """Grade every submission with `workers` in parallel, or on the Dask cluster at `scheduler`
    (through `client` when one is connected already); results in submission order.
    `progress(sub, result)` is called as each one is done."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options.setdefault("modules", batch_modules(sorted({s.assignment for s in subs})))  # one fork server for all
    if scheduler or client is not None:
        return grade_on_cluster(subs, out, scheduler, progress=progress, client=client, **options)
    workers = workers or os.cpu_count() or 1
    claims = [sandbox.claim_slot() for _ in range(workers)]
    slots = queue.Queue()
    for slot, _ in claims:
        slots.put(slot)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_grade_one, s, out, slots, options): s for s in subs}
            for future in as_completed(futures):
                if progress:
                    progress(futures[future], future.result())
            results = [future.result() for future in futures]
    finally:
        for _, lock in claims:
            lock.close()
    return results


def line(sub, result):
    """One submission's line for a log: who, status, score, seconds."""
    return (f"{sub.key:<40} {result['status']:<16} {result['score']:g}/{result['max_score']:g}"
            + (f"  {result['wall_seconds']:.1f} s" if result.get("wall_seconds") is not None else ""))


# ---------------------------------------------------------------------------------------------
# Grading on a Dask cluster. The coordinator (this process) decides what to grade, sends each
# submission's bytes and its source notebook as one task, and alone writes results/, the graded
# notebooks, the gradebook and the reports. A worker needs the installed environment (this
# package, nbgrader, the course's pinned set), not the course repository.

TASK_RETRIES = 2       # a task that raises (the worker's disk, say) is tried again on any worker


class ClusterLost(SystemExit):
    pass


_thread = threading.local()


def _worker_slot():
    """This worker thread's sandbox slot, claimed once and held while the thread lives, so a thread
    keeps its slot from task to task (the worker's fork server stays warm for all its threads)."""
    if getattr(_thread, "slot", None) is None:
        _thread.slot, _thread.lock = sandbox.claim_slot()
    return _thread.slot


def grade_task(student, assignment, name, data, source_bytes, options):
    """Runs on a Dask worker: grade one submission (its file's bytes, None when missing) against
    the source notebook's bytes, in this worker's sandbox, with the coordinator's limits.
    Returns (result, graded notebook text or None)."""
    import nbformat

    source_nb = nbformat.reads(source_bytes.decode("utf-8"), as_version=4)
    slot = _worker_slot()
    with tempfile.TemporaryDirectory(prefix="autograder-task-") as tmp:
        path = None
        if data is not None:  # the same file name as submitted: messages quote it
            path = Path(tmp) / "submission" / name
            path.parent.mkdir()
            path.write_bytes(data)
        save_to = Path(tmp) / "graded" / name
        tic = time.perf_counter()
        result = grade_notebook(student, assignment, path, slot=slot, source_nb=source_nb,
                                save_to=save_to, **options)
        result["wall_seconds"] = round(time.perf_counter() - tic, 3)
        graded = save_to.read_text(encoding="utf-8") if save_to.is_file() else None
    return result, graded


def course_code():
    """{package: (folder, digest of its .py files)} for the code that grades: course_utils (imported
    by the notebooks) and this package, as this process's environment finds them."""
    import hashlib

    found = {}
    for name, folder in (("course_utils", course.course_utils_dir()), ("autograder", Path(__file__).parent)):
        digest = hashlib.sha256()
        for path in sorted(Path(folder).glob("*.py")):  # the package's modules (not mutants/, which a wheel may lack)
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
        found[name] = (str(folder), digest.hexdigest()[:16])
    return found


def worker_info():
    """What a worker reports before grading: how it would isolate student code, and which code grades."""
    return {"isolation": sandbox.isolation(), "python": sys.version.split()[0], "code": course_code()}


def connect(scheduler, timeout=10):
    from distributed import Client

    try:
        return Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SystemExit(f"cannot reach the Dask scheduler at {scheduler}: {type(exc).__name__}: {exc}")


def _http_listening(dask_scheduler=None, dask_worker=None):
    """Runs on the scheduler or a worker: the addresses its process listens on besides its Dask comm
    (the HTTP server: dashboard, health, metrics; task names there carry student ids)."""
    import psutil

    server = dask_scheduler or dask_worker
    comm_port = int(server.address.rsplit(":", 1)[1])
    return sorted({(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("inet")
                   if c.status == psutil.CONN_LISTEN and c.laddr.port != comm_port})


def _public(ip):
    address = ipaddress.ip_address(ip)
    return address.is_unspecified or address.is_global


def http_exposure(client):
    """Lines for each HTTP server of the cluster that listens beyond loopback and private networks
    (0.0.0.0, ::, or a public address): empty when every one is bound where the instructor chose."""
    found = {"the scheduler": client.run_on_scheduler(_http_listening)}
    for address, listening in client.run(_http_listening).items():
        found[f"the worker at {address}"] = listening
    return [f"{who} serves HTTP on {ip}:{port}" for who, listening in found.items() for ip, port in listening
            if _public(ip)]


def check_workers(client):
    """{isolation: number of workers} over the cluster's workers; stops the command when a worker's
    course_utils or autograder differs from this machine's (an older install, an editable install
    pointing at another checkout): its grades would differ from local ones."""
    counts, mine, wrong = {}, course_code(), []
    for address, info in client.run(worker_info).items():
        counts[info["isolation"]] = counts.get(info["isolation"], 0) + 1
        for name, (folder, digest) in info["code"].items():
            if digest != mine[name][1]:
                wrong.append(f"{address}: {name} from {folder} differs from this machine's ({mine[name][0]})")
    if wrong:
        raise SystemExit("the workers must grade with the same code as this machine:\n  " + "\n  ".join(wrong)
                         + "\ninstall the same commit of the course in the workers' environment (pip install "
                           "--no-deps . from it) and restart them")
    return counts


def grade_on_cluster(subs, out, scheduler, progress=None, client=None, **options):
    """Grade on the Dask cluster at `scheduler` (an address, or pass a connected `client`).

    Only submissions without a stored result for their digest are sent, so a re-run after an
    interrupted batch grades only what is missing. A worker that dies mid-task: the scheduler
    runs the task again elsewhere (up to its `allowed-failures`); past that the submission is
    recorded `crashed`, not stored, and the next run grades it again."""
    from distributed import CancelledError, KilledWorker, as_completed

    out = Path(out)
    own = client is None
    client = client or connect(scheduler)
    futures = {}
    try:
        results, pending = {}, []
        for sub in subs:
            if sub.refused:
                results[sub.key] = _refused(sub)
                continue
            digest = _digest(sub)
            old = _stored(sub, out, digest)
            if old is not None:
                results[sub.key] = old
                if progress:
                    progress(sub, old)
            else:
                pending.append((sub, digest))
        print(f"  {len(results)} already graded (results/), {len(pending)} sent to the cluster", flush=True)
        sources = {a: course.source_notebook(a).read_bytes() for a in sorted({s.assignment for s, _ in pending})}
        for sub, digest in pending:
            data = Path(sub.path).read_bytes() if sub.path is not None and Path(sub.path).is_file() else None
            name = Path(sub.path).name if sub.path is not None else course.source_notebook(sub.assignment).name
            future = client.submit(grade_task, sub.student_id, sub.assignment, name, data, sources[sub.assignment],
                                   options, key=f"grade-{sub.key}-{uuid.uuid4().hex[:8]}",
                                   pure=False, retries=TASK_RETRIES)
            futures[future] = (sub, digest)
        for future in as_completed(list(futures), loop=client.loop):
            sub, digest = futures.pop(future)
            try:
                result, graded = future.result()
            except KilledWorker as exc:
                result = _grader_failed(sub, f"the Dask worker grading it died {exc.allowed_failures + 1} time(s) "
                                             "(KilledWorker); not stored: run the same command again to grade it")
                graded = None
            except CancelledError:
                raise ClusterLost(f"lost the Dask scheduler at {scheduler} mid-batch; {len(results)} result(s) kept "
                                  f"in {out / 'results'}: run the same command again to grade the rest")
            except Exception as exc:  # the grader raised on the worker, every retry
                result = _grader_failed(sub, f"the grader failed on a Dask worker: {type(exc).__name__}: {exc}; "
                                             "not stored: run the same command again to grade it")
                graded = None
            else:
                if graded is not None:
                    path = _graded_path(sub, out)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(graded, encoding="utf-8")
                result = _store(sub, out, result, digest)
            results[sub.key] = result
            if progress:
                progress(sub, result)
    finally:
        for future in futures:  # left over only when the batch stopped early
            future.cancel()
        if own:
            client.close()
    return [results[sub.key] for sub in subs]


# ---------------------------------------------------------------------------------------------
# Feedback through nbgrader's exchange

def nbgrader_feedback(subs, results, out):
    """The harness's feedback in nbgrader's feedback layout, for `nbgrader release_feedback`:
    DIR/nbgrader_feedback/<student>/<assignment>/<notebook>.html beside the submission's
    timestamp.txt and submission_secret.txt (nbgrader names the released file after a hash of
    that secret and the notebook's name, which only the submitting student's cache knows). Only
    for submissions collected from the exchange (they have a submission_secret.txt). Returns
    the number of feedback files written."""
    from .report import feedback_html

    written = 0
    for sub, result in zip(subs, results):
        if sub.path is None:
            continue
        folder = Path(sub.path).parent
        secret, stamp = folder / "submission_secret.txt", folder / "timestamp.txt"
        if not secret.is_file() or not stamp.is_file():
            continue
        target = Path(out) / "nbgrader_feedback" / sub.student_id / sub.assignment
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(secret, target / secret.name)
        shutil.copyfile(stamp, target / stamp.name)
        html_path = target / f"{Path(sub.path).stem}.html"
        html_path.write_text(feedback_html(result), encoding="utf-8")
        # release_feedback copies the mode: the student must be able to read it
        os.chmod(html_path, 0o644)
        written += 1
    return written
