"""`autograder`: the instructor's commands (release, validate, grade, check, mutants, demo)."""
import argparse
import copy
import os
import shutil
import sys
import tempfile
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from . import batch, course, gradebook, mutation, notebooks, report, similarity
from . import sandbox
from .grading import grade_notebook

HERE = Path(__file__).resolve().parent
BUNDLE_MARK = "student_bundle.py"  # written by `release` into the copy of this package it hands out
STUDENT_BUNDLE = (HERE / BUNDLE_MARK).exists()
STUDENT_DOC = "`autograder check NOTEBOOK`: run a notebook's visible tests the way grading does."


def _nbgrader_api(root):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    return NbGraderAPI(config=config)


class Progress:
    """grade_all's progress: a tqdm bar (count, rate, ETA) on a terminal, one line per submission
    elsewhere (a pipe, CI); with `log`, every line also goes to that file."""

    def __init__(self, total, what="submission", log=None):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit=what, disable=None, dynamic_ncols=True)  # None: off unless a tty
        self.statuses = Counter()
        self.log = None
        if log is not None:
            self.log = open(log, "a", encoding="utf-8")
            self.log.write(f"# {datetime.now().astimezone().isoformat(timespec='seconds')}: {total} {what}(s)\n")

    def __call__(self, sub, result):
        text = batch.line(sub, result)
        if self.log is not None:
            self.log.write(text + "\n")
            self.log.flush()
        if self.bar.disable:
            print("  " + text, flush=True)
            return
        self.statuses[result["status"]] += 1
        self.bar.set_postfix_str(" ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())), refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()
        if self.log is not None:
            self.log.close()


def check_stripped(source_nb, release_nb, assignment):
    """Prove by content that no solution and no hidden test reached the release: no marker, no
    output, and no line that the source has only inside those regions."""
    leaked = []
    release_text = "\n".join(cell.source for cell in release_nb.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        if marker in release_text:
            leaked.append(f"marker {marker!r}")
    release_lines = {line.strip() for line in release_text.splitlines()}
    leaked += [f"line {line[:60]!r}" for line in sorted(notebooks.secret_lines(source_nb) & release_lines)]
    if any(cell.get("outputs") for cell in release_nb.cells if cell.cell_type == "code"):
        leaked.append("stored outputs")
    if leaked:
        raise SystemExit(f"release of {assignment} is not clean: " + "; ".join(leaked[:5]))


def cmd_release(args):
    root = course.course_root()
    release = root / "release"
    api = _nbgrader_api(root)
    for assignment in course.pick(args.assignments):
        result = api.generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            print(result["log"], result.get("error") or "", file=sys.stderr)
            raise SystemExit(f"nbgrader could not release {assignment}")
        name = course.source_notebook(assignment).name
        check_stripped(notebooks.read(course.source_notebook(assignment)),
                       notebooks.read(release / assignment / name), assignment)
        print(f"released {assignment} -> release/{assignment}/{name} (solutions and hidden tests stripped)")
    # What students need beside the notebooks: course_utils, the pinned versions, how to start.
    shutil.copytree(course.course_utils_dir(), release / "course_utils", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    # the harness too, for `autograder check`; never the mutants (near-solutions)
    shutil.rmtree(release / "autograder", ignore_errors=True)
    shutil.copytree(HERE, release / "autograder", ignore=shutil.ignore_patterns("__pycache__", "mutants", "student_*"))
    (release / "autograder" / BUNDLE_MARK).write_text(
        '"""This copy of the harness is a student release\'s: `autograder` offers only `check`."""\n')
    if (root / "requirements.lock").exists():  # the pins, under a header for students
        pins = [line for line in (root / "requirements.lock").read_text().splitlines(True) if not line.startswith("#")]
        (release / "requirements.lock").write_text(
            "# The versions the notebooks were tested with (Python 3.11). Install them with\n"
            "#   python3 -m pip install -r requirements.lock\n" + "".join(pins))
    shutil.copy(HERE / "student_pyproject.toml", release / "pyproject.toml")
    shutil.copy(HERE / "student_README.md", release / "README.md")
    # a student's JupyterLab without nbgrader's instructor tools (formgrader, Create Assignment, courses)
    shutil.copytree(HERE / "student_jupyter_config", release / "jupyter-config", dirs_exist_ok=True)
    print(f"student bundle ready: {release} (hand out this folder, or a zip of it)")


# A bare release whose first cell takes the runner over: every `with student:` block "succeeds" and
# hands back the same forged value for every name the test asks for. No test may pass.
FORGED = {"empty": "[]", "zeros": "0.0", "none": "None", "true": "True", "dict": "{}",
          "echo": "next((v for v in _c.decode(request['inputs'], imports=True).values() if hasattr(v, 'shape')), 0.0)"}
TAKEOVER = """import sys
_r, _c = sys.modules["autograder.runner"], sys.modules["autograder.codec"]
_run = _r.run
def _forged(request, namespace):
    if "block" not in request:
        return _run(request, namespace)
    return {{"index": request["index"], "error": None, "inputs": {{}},
            "values": {{name: _c.encode({value}) for name in request["outputs"]}}}}
_r.run = _forged
"""


def _samples(assignment, mutant_files=(), forged=True):
    """Sample submissions made from the source: the reference, the bare release, the bare release
    with the runner taken over (FORGED), and mutants."""
    source_nb = notebooks.read(course.source_notebook(assignment))
    release_nb = notebooks.student_version(source_nb)
    reference = notebooks.answers(source_nb)
    samples = {"reference": notebooks.fill(release_nb, reference), "bare": release_nb}
    for kind, value in FORGED.items() if forged else ():
        forged = copy.deepcopy(release_nb)
        forged.cells.insert(0, nbformat.v4.new_code_cell(TAKEOVER.format(value=value)))
        samples[f"forged_{kind}"] = forged
    for path in mutant_files:
        gid = path.stem.split("__")[0]
        if gid not in reference:
            raise SystemExit(f"mutant {path.name}: {assignment} has no answer cell {gid!r}")
        samples[f"mutant_{path.stem}"] = notebooks.fill(release_nb, {**reference, gid: _mutant_source(path, reference[gid])})
    return samples


def _write_samples(folder, assignment, samples):
    name = course.source_notebook(assignment).name
    for student, nb in samples.items():
        target = Path(folder) / student / assignment / name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(target))


def _mutant_files(assignment):
    folder = course.mutants_dir() / assignment
    return sorted([*folder.glob("*__*.py"), *folder.glob("*__*.diff")])


def _mutant_source(path, reference):
    """A mutant's answer cell: a whole cell (.py) or a patch of the reference answer (.diff)."""
    if path.suffix != ".diff":
        return path.read_text()
    try:
        return mutation.apply_diff(reference, path.read_text())
    except mutation.PatchError as exc:
        raise SystemExit(f"mutant {path}: {exc}; update the patch to the current reference answer")


def _release_checks(results):
    """What `validate` checks in graded samples: the source passes every test, the release none."""
    failures = []
    for r in results:
        if r["student_id"] == "reference" and (r["status"] != "graded" or r["score"] != r["max_score"]):
            bad = [f"{t['test']}: {t['error']}" for t in r["tests"] if t["score"] < t["max_score"]]
            failures.append(f"{r['assignment']}: the source does not pass its own tests ({r['status']}): {bad}")
        if r["student_id"] == "reference" and r.get("cell_errors"):
            failures.append(f"{r['assignment']}: cells of the source fail in grading: {r['cell_errors']}")
        if r["student_id"] == "bare":
            passing = [t["test"] for t in r["tests"] if t["score"] > 0]
            if passing or r["status"] != "graded":
                failures.append(f"{r['assignment']}: the release passes {passing} ({r['status']})")
        if r["student_id"].startswith("forged_"):
            passing = [t["test"] for t in r["tests"] if t["score"] > 0]
            if passing:
                failures.append(f"{r['assignment']}: the release with a runner that forges replies "
                                f"({r['student_id']}) passes {passing}")
    return failures


def _grade_samples(args, with_mutants):
    """Grade the reference, the bare release and (with_mutants) every mutant of each assignment in
    one batch; returns (results, failures found before grading)."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="samples-") as tmp:
        assignments = course.pick(args.assignments)
        for assignment in assignments:
            files = _mutant_files(assignment) if with_mutants else []
            if with_mutants and not files:
                failures.append(f"{assignment}: no mutants in {course.mutants_dir() / assignment}")
            _write_samples(Path(tmp) / "in", assignment, _samples(assignment, files))
        subs, _ = batch.collect(Path(tmp) / "in", assignments, complete=False)
        progress = Progress(len(subs), "sample")
        try:
            return batch.grade_all(subs, Path(tmp) / "out", workers=args.workers,
                                   progress=progress), failures
        finally:
            progress.close()


def cmd_validate(args):
    results, failures = _grade_samples(args, with_mutants=False)
    return _report(failures + _release_checks(results), "validate")


def cmd_mutants(args):
    results, failures = _grade_samples(args, with_mutants=True)
    failures += _release_checks(results)  # graded anyway: validate's checks come free
    mutants = [r for r in results if r["student_id"].startswith("mutant_")]
    for r in mutants:
        lost = sorted(t["test"] for t in r["tests"] if t["score"] < t["max_score"])
        gid = r["student_id"][len("mutant_"):].split("__")[0]
        if f"test_{gid}" not in lost:
            failures.append(f"{r['assignment']}/{r['student_id']}: NOT caught by test_{gid}")
        elif lost != [f"test_{gid}"]:
            failures.append(f"{r['assignment']}/{r['student_id']}: also costs points on {lost} (a cascade)")
    caught = len(mutants) - len([f for f in failures if "mutant_" in f])
    print(f"{caught} of {len(mutants)} mutants caught on their own test only")
    return _report(failures, "mutants")


def _report(failures, what):
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"{what}: {'OK' if not failures else f'{len(failures)} problem(s)'}")
    return 1 if failures else 0


def _due(text):
    if text is None:
        return None
    try:
        due = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"--due {text!r}: expected an ISO 8601 time, e.g. 2026-12-01T23:59+01:00")
    if due.tzinfo is None:
        raise SystemExit(f"--due {text!r} has no time zone; add one, e.g. {text}+01:00 or {text}Z")
    return due


def cmd_grade(args):
    assignments = course.pick([args.assignment] if args.assignment else [])
    due = _due(args.due)
    tz = due.tzinfo if due else timezone.utc
    src = Path(args.submissions)
    if not src.exists():
        raise SystemExit(f"no such folder or zip: {src}")
    out = Path(args.out)
    inbox = None
    if src.is_file():
        if src.suffix != ".zip":
            raise SystemExit(f"{src}: expected a folder or a .zip file")
        inbox = tempfile.TemporaryDirectory(prefix="lms-")
        src = batch.unzip(src, Path(inbox.name), tz)
    subs, unmatched = batch.collect(src, assignments, explicit=bool(args.assignment))
    for name in unmatched:
        print(f"  not graded: {name} (not <student_id>_<assignment>.ipynb; listed in the report)", file=sys.stderr)
    if not subs:
        raise SystemExit(f"no submissions found in {args.submissions} "
                         "(expected <student>/<assignment>/<notebook>.ipynb or <student>_<assignment>.ipynb)")
    client = None
    if args.scheduler:  # an existing dask.distributed cluster grades; this process coordinates
        client = batch.connect(args.scheduler)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        isolation = batch.check_workers(client)
        print(f"grading {len(subs)} submission(s) on the Dask cluster at {args.scheduler} ({len(workers)} worker(s), "
              f"{sum(w['nthreads'] for w in workers.values())} thread(s)) -> {out}")
        print("isolation of student code on the workers: "
              + (", ".join(f"{how} ({n})" for how, n in sorted(isolation.items())) or "no worker yet"))
        exposed = batch.http_exposure(client)
        if exposed:
            print("WARNING: the cluster's HTTP servers (dashboard, health; task names carry student ids) listen "
                  "beyond this machine: " + "; ".join(exposed) + ". Start the scheduler with --dashboard-address "
                  "127.0.0.1:8787 and workers with --host <address> --dashboard-address 127.0.0.1:0 "
                  "(README, 'Grading on a Dask cluster').", file=sys.stderr)
    else:
        isolation = {sandbox.isolation(): 1}
        print(f"grading {len(subs)} submission(s) with {args.workers or os.cpu_count()} worker(s) -> {out}")
        print(f"isolation of student code: {sandbox.isolation()}")
    out.mkdir(parents=True, exist_ok=True)
    tables = threading.Thread(target=gradebook.prepare, args=(out,), daemon=True)
    tables.start()  # the gradebook's migrations run while the processes start and the class is graded
    if not args.no_canary:
        _canary(sorted({s.assignment for s in subs}), args, client)
    progress = Progress(len(subs), log=out / "grading.log")
    try:
        results = batch.grade_all(subs, out, workers=args.workers, scheduler=args.scheduler,
                                  client=client, cell_timeout=args.cell_timeout, submission_timeout=args.timeout,
                                  memory_mb=args.memory, progress=progress)
    finally:
        progress.close()
        if client is not None:
            client.close()
    for sub, r in zip(subs, results):
        when, note = batch.submitted_at(sub, tz)
        r["submitted_at"] = when.isoformat(timespec="seconds") if when else None
        r["late_minutes"] = None if due is None or when is None else max(0, int((when - due).total_seconds() // 60))
        late = f"late by {r['late_minutes']} min" if r["late_minutes"] else ""
        r["message"] = "; ".join(filter(None, [late, r["message"], note]))
    tables.join()
    gradebook.record(results, out, due.astimezone(timezone.utc).replace(tzinfo=None) if due else None)
    pairs = None if args.no_similarity else similarity.find_pairs(subs, args.threshold)
    report.write(results, out, unmatched=unmatched, pairs=pairs, threshold=args.threshold)
    batch.nbgrader_feedback(subs, results, out)  # for `nbgrader release_feedback` (exchange submissions only)
    if inbox is not None:
        inbox.cleanup()
    for how in sorted(set(isolation) - {"namespaces"}):
        print(f"WARNING: student code ran with {how}", file=sys.stderr)
    look = sum(1 for r in results if report.needs_a_look(r))
    print(f"wrote {out / 'grades.csv'}, {out / 'scores.csv'}, {out / 'feedback'}/ and {out / 'report.html'} "
          f"({look} submission(s) need a human look); one line per submission in {out / 'grading.log'}")
    return 0


def cmd_similarity(args):
    assignments = course.pick([args.assignment] if args.assignment else [])
    subs, _ = batch.collect(Path(args.submissions), assignments, explicit=bool(args.assignment))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = similarity.find_pairs(subs, args.threshold)
    similarity.write(pairs, args.threshold, out)
    print(f"{len(pairs)} pair(s) of answers at least {args.threshold:.0%} alike: {out / 'similarity.html'}, "
          f"{out / 'similarity.csv'}")
    return 0


def _canary(assignments, args, client):
    """Grade each assignment's reference first, where the class will be graded: a fault of the
    grader (a library that does not import there, a test that fails for everyone) stops the command
    here, before it costs every student points."""
    with tempfile.TemporaryDirectory(prefix="canary-") as tmp:
        for assignment in assignments:
            _write_samples(Path(tmp) / "in", assignment, {"reference": _samples(assignment, forged=False)["reference"]})
        subs, _ = batch.collect(Path(tmp) / "in", assignments, complete=False)
        results = batch.grade_all(subs, Path(tmp) / "out", workers=args.workers, scheduler=args.scheduler,
                                  client=client, cell_timeout=args.cell_timeout, submission_timeout=args.timeout,
                                  memory_mb=args.memory)
    failures = _release_checks(results)
    if failures:
        raise SystemExit("the reference answers do not pass in grading here, so no student was graded:\n  "
                         + "\n  ".join(failures) + "\n(fix the environment or the tests; --no-canary grades anyway)")


def cmd_check(args):
    path = Path(args.notebook)
    try:
        own = notebooks.read(path)
    except Exception as exc:
        raise SystemExit(f"{path} is not a readable notebook: {exc}")
    slot, lock = sandbox.claim_slot()
    with lock:
        result = grade_notebook("me", path.stem, path, slot=slot, source_nb=own, visible_only=True,
                                cell_timeout=args.cell_timeout)
    for t in result["tests"]:
        mark = "ok  " if t["score"] >= t["max_score"] else "FAIL"
        error = t["error"] or ""
        if error.startswith("NotImplementedError"):
            error = "not answered yet (the answer cell still raises NotImplementedError)"
        print(f"{mark} {t['test']:<36} {t['score']:g}/{t['max_score']:g}" + (f"  {error}" if error else ""))
    if result["message"]:
        print(f"note: {result['message']}")
    print(f"visible tests: {result['score']:g}/{result['max_score']:g} (grading also runs hidden tests)")
    return 0 if result["score"] == result["max_score"] and result["status"] in ("graded", "tampered") else 1


def cmd_demo(args):
    root = course.course_root()
    demo = root / "demo"
    shutil.rmtree(demo, ignore_errors=True)
    assignments = course.pick(args.assignments)
    for assignment in assignments:
        files = _mutant_files(assignment)[:1]
        _write_samples(demo / "submissions", assignment, _samples(assignment, files, forged=False))
    print(f"sample submissions (reference, bare release, a mutant) in {demo / 'submissions'}")
    subs, _ = batch.collect(demo / "submissions", assignments, complete=False)
    out = demo / "grading"
    results = batch.grade_all(subs, out, workers=args.workers, progress=None)
    gradebook.record(results, out)
    report.write(results, out)
    report.print_table(sorted(results, key=lambda r: (r["assignment"], r["student_id"])))
    print(f"reports: {out / 'grades.csv'}, {out / 'scores.csv'}, {out / 'feedback'}/, {out / 'report.html'}")
    return 0


def main(argv=None):
    # nbgrader creates its gradebook by running `alembic` from PATH: make sure ours is found.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    parser = argparse.ArgumentParser(prog="autograder", description=STUDENT_DOC if STUDENT_BUNDLE else __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    workers = dict(type=int, default=None, help="parallel submissions (default: the number of cores)")
    similarity_help = (f"share of fingerprints two answers must have in common to be listed as alike "
                       f"(default {similarity.THRESHOLD})")

    p = sub.add_parser("check", help="a student's self-check: run a notebook with its visible tests")
    p.add_argument("notebook")
    p.add_argument("--cell-timeout", type=int, default=120)
    p.set_defaults(func=cmd_check)
    if not STUDENT_BUNDLE:  # the instructor's commands
        on_assignments = [  # (name, help, func, parallel): commands on [ASSIGNMENT...], all by default
            ("release", "student versions into release/, checked to be stripped", cmd_release, False),
            ("validate", "the source passes all its tests; the release fails every one", cmd_validate, True),
            ("mutants", "validate's checks, then every known-wrong answer: fail unless each loses points on "
                        "its own test only", cmd_mutants, True),
            ("demo", "build sample submissions from the source and grade them", cmd_demo, True),
        ]
        for name, text, func, parallel in on_assignments:
            p = sub.add_parser(name, help=text)
            p.add_argument("assignments", nargs="*")
            if parallel:
                p.add_argument("--workers", **workers)
            p.set_defaults(func=func)
        p = sub.add_parser("grade", help="grade a folder (or zip) of submissions")
        p.add_argument("submissions", help="<student>/<assignment>/<notebook>.ipynb tree, or <student>_<assignment>.ipynb files, or a zip")
        p.add_argument("--out", required=True, help="output folder: grades.csv, scores.csv, feedback/")
        p.add_argument("--assignment", help="grade only this assignment (students without it get `missing`)")
        p.add_argument("--workers", **workers)
        p.add_argument("--cell-timeout", type=int, default=60, help="seconds per cell (default 60)")
        p.add_argument("--timeout", type=int, default=600, help="seconds per submission (default 600)")
        p.add_argument("--memory", type=int, default=4096, help="address-space limit per submission in MiB (default 4096)")
        p.add_argument("--due", help="due date with a time zone, e.g. 2026-12-01T23:59+01:00: adds late_minutes")
        p.add_argument("--no-canary", action="store_true",
                       help="do not grade each assignment's reference first (by default a reference that "
                            "fails stops the command before any student is graded)")
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on this dask.distributed cluster (e.g. tcp://10.0.0.5:8786) instead of local "
                            "processes; --workers is then ignored")
        p.add_argument("--no-similarity", action="store_true", help="leave out the report's section on answers that look alike")
        p.add_argument("--threshold", type=float, default=similarity.THRESHOLD, help=similarity_help)
        p.set_defaults(func=cmd_grade)
        p = sub.add_parser("similarity", help="pairs of students whose answers look alike, per answer cell (for a person to read)")
        p.add_argument("submissions", help="the folder `grade` takes")
        p.add_argument("--out", required=True, help="output folder: similarity.html, similarity.csv")
        p.add_argument("--assignment", help="only this assignment")
        p.add_argument("--threshold", type=float, default=similarity.THRESHOLD, help=similarity_help)
        p.set_defaults(func=cmd_similarity)
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
