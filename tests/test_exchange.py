"""nbgrader's exchange end to end, as on a JupyterHub: the instructor releases the toy course's
assignment to an exchange folder, two students fetch and submit it from their own home folders,
the instructor collects with `nbgrader collect`, grades the collected submitted/ tree with
`autograder grade`, and releases the harness's feedback through the exchange; each student
fetches only their own.

As root (here and in CI) the students are real Unix users made with useradd (and removed after),
each with a 0700 home, and the test checks what each may read. Without root they are simulated:
separate HOME folders and CourseDirectory.student_id, with no permission checks (said in the
output). The students act through nbgrader's own JupyterLab back end (the "Assignments" tab,
nbgrader.server_extensions.assignment_list.AssignmentList), each in one long-lived process; the
instructor runs the README's commands (nbgrader's as processes, autograder's in the test's own
process). Toy course: test_add 2 points, test_square 1, test_double_array 2."""
import csv
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from autograder import cli, notebooks
from conftest import BIN, copy_toy_course

COURSE = "open-dl-course"  # the toy course's CourseDirectory.course_id


def _unreachable_ancestor(path):
    """The outermost folder above `path` that other users cannot enter (e.g. /root of a pyenv
    Python), or None."""
    path = Path(os.path.realpath(path))
    for folder in [*reversed(path.parents), path]:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


# The Python installation and this checkout's environment (a clone in a 0700 folder: `mktemp -d`):
# each folder students must reach to run Python, with the outermost folder above it they cannot enter.
KEEP = {os.path.realpath(p): _unreachable_ancestor(p) for p in dict.fromkeys([sys.base_prefix, sys.prefix])}
PYTHON_HIDDEN_IN = sorted({str(cover) for cover in KEEP.values() if cover is not None})
REAL_USERS = (os.geteuid() == 0 and bool(shutil.which("useradd")) and bool(shutil.which("userdel"))
              and (not PYTHON_HIDDEN_IN or bool(shutil.which("unshare"))))

# Starts a student's process as that user. Where this Python or the checkout's environment lives in a
# folder other users cannot enter (a pyenv under /root, a clone in a 0700 folder), it runs in a private
# mount namespace with a tmpfs over each such folder and only the Python installation and the
# environment mounted back, as the grader's sandbox does.
LAUNCH = r'''
import json, os, subprocess, sys
spec = json.loads(sys.argv[1])
for keep, stash in spec["keep"]:
    subprocess.run(["mount", "--bind", keep, stash], check=True)
for cover in spec["cover"]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", cover], check=True)
for keep, stash in spec["keep"]:
    os.makedirs(keep, exist_ok=True)
    subprocess.run(["mount", "--move", stash, keep], check=True)
os.setgroups([])
os.setgid(spec["gid"])
os.setuid(spec["uid"])
os.chdir(spec["home"])
os.execve(spec["argv"][0], spec["argv"], spec["env"])
'''

STUDENT = r'''
"""One student's JupyterLab back end: JSON requests on stdin, one JSON reply per line."""
import json, os, shutil, sys, traceback
from pathlib import Path
replies = os.fdopen(os.dup(1), "w")
sys.stdout = sys.stderr  # nbgrader's chatter never mixes with the replies
from nbgrader.auth import Authenticator
from nbgrader.coursedir import CourseDirectory
from nbgrader.exchange import ExchangeFactory
from nbgrader.server_extensions.assignment_list.handlers import AssignmentList

COURSE = sys.argv[1]
home = Path.home()
lab = AssignmentList()
lab.root_dir = str(home)


def probe(path):
    try:
        os.listdir(path) if os.path.isdir(path) else open(path).read()
        return "allowed"
    except PermissionError:
        return "denied"
    except FileNotFoundError:
        return "missing"


def handle(req):
    op, assignment = req["op"], req.get("assignment")
    if op == "list":
        return lab.list_assignments(course_id=COURSE)
    if op == "fetch":
        return lab.fetch_assignment(COURSE, assignment)
    if op == "work":  # the student edits the notebook (here: the answers arrive ready-made)
        shutil.copyfile(req["answers"], home / assignment / req["notebook"])
        return {"success": True}
    if op == "submit":
        return lab.submit_assignment(COURSE, assignment)
    if op == "fetch_feedback":
        return lab.fetch_feedback(COURSE, assignment)
    if op == "fetch_feedback_of":  # `nbgrader fetch_feedback --student OTHER`: someone else's
        with lab.get_assignment_dir_config() as config:
            config.CourseDirectory.course_id = COURSE
            config.CourseDirectory.assignment_id = assignment
            config.CourseDirectory.student_id = req["student"]
            ExchangeFactory(config=config).FetchFeedback(coursedir=CourseDirectory(config=config),
                                                         authenticator=Authenticator(config=config),
                                                         config=config).start()
        return {"success": True}
    if op == "probe":
        return {"success": True, "value": {p: probe(p) for p in req["paths"]}}
    raise ValueError(op)


for line in sys.stdin:
    try:
        reply = handle(json.loads(line))
    except Exception:
        reply = {"success": False, "error": traceback.format_exc()}
    replies.write(json.dumps(reply, default=str) + "\n")
    replies.flush()
'''


class Student:
    def __init__(self, name, home, world):
        self.name, self.home, self.world = name, home, world
        self.log = world / f"{name}.log"
        self.proc = None

    def start(self):
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "LC_ALL": "C.UTF-8",
               "PATH": f"{BIN}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, str(self.world / "student.py"), COURSE]
        if REAL_USERS:
            entry = pwd.getpwnam(self.name)
            keep = []
            for i, path in enumerate(p for p, cover in KEEP.items() if cover is not None):
                stash = self.world / f".python-{self.name}-{i}"
                stash.mkdir(exist_ok=True)
                keep.append((path, str(stash)))
            spec = {"uid": entry.pw_uid, "gid": entry.pw_gid, "home": str(self.home), "argv": argv, "env": env,
                    "cover": PYTHON_HIDDEN_IN, "keep": keep}
            argv = [sys.executable, "-c", LAUNCH, json.dumps(spec)]
            if PYTHON_HIDDEN_IN:
                argv = ["unshare", "--mount", "--propagation", "private", *argv]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.home, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, text=True)

    def __call__(self, op, **request):
        self.proc.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"{self.name}'s process died: {self.log.read_text()[-3000:]}"
        reply = json.loads(line)
        assert reply["success"], (self.name, op, reply)
        return reply

    def stop(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


@pytest.fixture
def world():
    """A folder every user can traverse (the exchange, the homes), and a maker of students;
    users made here are removed afterwards, whatever happens."""
    base = Path(tempfile.mkdtemp(prefix="nbexchange-", dir="/tmp"))
    base.chmod(0o755)
    (base / "student.py").write_text(STUDENT)
    (base / "student.py").chmod(0o644)
    made, students = [], []

    def make(label):
        name = f"nbx{os.getpid() % 100000}{label[0]}" if REAL_USERS else label  # unique on a shared machine
        home = base / "home" / name
        if REAL_USERS:
            for attempt in range(10):  # another useradd holding the lock on /etc/passwd: try again
                done = subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell",
                                       "/usr/sbin/nologin", "--user-group", name], capture_output=True, text=True)
                if done.returncode == 0:
                    break
                time.sleep(0.5)
            assert done.returncode == 0, done.stderr
            made.append(name)
        home.mkdir(parents=True)
        config = home / ".jupyter" / "nbgrader_config.py"
        config.parent.mkdir()
        lines = ["c = get_config()", f"c.Exchange.root = {str(base / 'exchange')!r}",
                 f"c.CourseDirectory.course_id = {COURSE!r}"]
        if not REAL_USERS:
            lines.append(f"c.CourseDirectory.student_id = {name!r}")
        config.write_text("\n".join(lines) + "\n")
        if REAL_USERS:
            entry = pwd.getpwnam(name)
            for path in (home, config.parent, config):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            home.chmod(0o700)
        student = Student(name, home, base)
        students.append(student)
        return student

    try:
        yield base, make
    finally:
        for student in students:
            try:
                student.stop()
            except Exception:
                student.proc.kill()
        for name in made:
            subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _instructor(root, monkeypatch, *args):
    """A command of the README's, typed by the instructor in the course folder: nbgrader's in its
    own process, autograder's in this one (its imports are paid already)."""
    if args[0] == "autograder":
        monkeypatch.chdir(root)
        monkeypatch.delenv("COURSE_ROOT", raising=False)
        assert cli.main([str(a) for a in args[1:]]) == 0, args
        return ""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], cwd=root, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, f"{args}: {run.stdout}{run.stderr}"
    return run.stdout + run.stderr


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_release_fetch_submit_collect_grade_and_feedback_through_the_exchange(world, tmp_path, monkeypatch):
    base, make = world
    exchange = base / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)  # the admin's one step: a folder everyone may write
    root = copy_toy_course(tmp_path)  # the instructor's (private) course folder
    with open(root / "nbgrader_config.py", "a") as config:
        config.write(f"c.Exchange.root = {str(exchange)!r}\n")

    # answers the two students will type: alice all correct; bob first the bare release, then
    # a wrong add (only his last submission counts)
    source = notebooks.read(root / "notebooks/00_toy/00_toy.ipynb")
    release = notebooks.student_version(source)
    work = {"alice": notebooks.fill(release, notebooks.answers(source)), "bob_first": release,
            "bob": notebooks.fill(release, {**notebooks.answers(source), "add": "def add(a, b):\n    return a - b\n"})}
    for label, nb in work.items():
        nbformat.write(nb, str(base / f"{label}.ipynb"))
        (base / f"{label}.ipynb").chmod(0o644)

    # the instructor releases
    _instructor(root, monkeypatch, "autograder", "release", "00_toy")
    _instructor(root, monkeypatch, "nbgrader", "release_assignment", "00_toy")
    course = exchange / COURSE
    assert (course / "outbound/00_toy/00_toy.ipynb").is_file()
    assert "BEGIN SOLUTION" not in (course / "outbound/00_toy/00_toy.ipynb").read_text()
    assert _mode(exchange) == 0o777 and _mode(course) == 0o755 and _mode(course / "outbound") == 0o755
    assert _mode(course / "inbound") == 0o2733  # students may write and enter, never list

    # the students fetch, work and submit, each from their own home
    alice, bob = make("alice"), make("bob")
    for student in (alice, bob):
        student.start()
        listed = student("list")["value"]
        assert [(a["assignment_id"], a["status"]) for a in listed] == [("00_toy", "released")]
        student("fetch", assignment="00_toy")
        assert (student.home / "00_toy/00_toy.ipynb").is_file()
    alice("work", assignment="00_toy", notebook="00_toy.ipynb", answers=str(base / "alice.ipynb"))
    alice("submit", assignment="00_toy")
    bob("work", assignment="00_toy", notebook="00_toy.ipynb", answers=str(base / "bob_first.ipynb"))
    bob("submit", assignment="00_toy")
    bob("work", assignment="00_toy", notebook="00_toy.ipynb", answers=str(base / "bob.ipynb"))
    bob("submit", assignment="00_toy")
    inbound = sorted(p.name for p in (course / "inbound").iterdir())
    assert [n.split("+")[0] for n in inbound] == sorted([alice.name, bob.name, bob.name])
    if REAL_USERS:
        owners = {pwd.getpwuid(os.stat(course / "inbound" / n).st_uid).pw_name for n in inbound}
        assert owners == {alice.name, bob.name}
        seen = bob("probe", paths=[str(course / "inbound"), str(alice.home), str(alice.home / "00_toy/00_toy.ipynb"),
                                   str(course / "outbound/00_toy/00_toy.ipynb")])["value"]
        assert list(seen.values()) == ["denied", "denied", "denied", "allowed"], seen

    # the instructor collects and grades the collected tree
    collected = _instructor(root, monkeypatch, "nbgrader", "collect", "00_toy")
    if REAL_USERS:  # nbgrader checks each submission's owner against the name it claims
        assert "cheating attempt" not in collected, collected
    submitted = root / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == sorted([alice.name, bob.name])
    assert "return a - b" in (submitted / bob.name / "00_toy/00_toy.ipynb").read_text()  # his last
    _instructor(root, monkeypatch, "autograder", "grade", "submitted", "--out", "grading", "--assignment", "00_toy")
    with open(root / "grading/grades.csv", encoding="utf-8-sig") as handle:
        rows = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert {s: (r["score"], r["status"]) for s, r in rows.items()} == {alice.name: ("5", "graded"),
                                                                       bob.name: ("3", "graded")}
    stamp = (submitted / bob.name / "00_toy/timestamp.txt").read_text().strip()
    assert rows[bob.name]["submitted_at"].startswith(stamp[:19].replace(" ", "T"))

    # ... and returns the feedback through the exchange
    _instructor(root, monkeypatch, "nbgrader", "release_feedback", "00_toy",
                "--CourseDirectory.feedback_directory=grading/nbgrader_feedback")
    released = sorted(p.name for p in (course / "feedback").iterdir())
    expected = sorted(hashlib.md5(((submitted / s / "00_toy/submission_secret.txt").read_text() + "00_toy").encode())
                      .hexdigest() + ".html" for s in (alice.name, bob.name))
    assert released == expected  # named by a hash of each submission's secret: unguessable
    assert _mode(course / "feedback") == 0o711  # enter, never list
    assert all(_mode(course / "feedback" / n) == 0o644 for n in released)

    # each student fetches their own feedback, and only that
    pages = {}
    for student in (alice, bob):
        student("fetch_feedback", assignment="00_toy")
        found = sorted((student.home / "00_toy/feedback").glob("*/*.html"))
        assert len(found) == 1, found  # bob: for his collected submission, not for the first one
        pages[student.name] = found[0].read_text()
    assert f"Student: {alice.name}" in pages[alice.name] and "00_toy: 5 / 5" in pages[alice.name]
    assert f"Student: {bob.name}" in pages[bob.name] and "00_toy: 3 / 5" in pages[bob.name]
    assert "add(1, 2) should be 3, got -1" in pages[bob.name]  # the visible test's teaching message
    assert bob.name not in pages[alice.name] and alice.name not in pages[bob.name]
    for secret in ("BEGIN", "HIDDEN", "add(-5, 5)", str(root)):
        assert secret not in pages[bob.name], secret
    # bob asks for alice's feedback: only the secrets in his own cache name a file, so he gets his own
    bob("fetch_feedback_of", assignment="00_toy", student=alice.name)
    assert len(list((bob.home / "00_toy/feedback").glob("*/*.html"))) == 1
    if REAL_USERS:
        alice_page = next((alice.home / "00_toy/feedback").glob("*/*.html"))
        seen = bob("probe", paths=[str(course / "feedback"), str(alice_page),
                                   str(root / "grading/feedback")])["value"]
        assert list(seen.values()) == ["denied", "denied", "denied"], seen
    else:
        print("students simulated (not root): separate HOME and CourseDirectory.student_id, "
              "no Unix permission checks")
