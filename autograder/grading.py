"""Grade one submission: assemble the graded notebook, run it in the sandboxed runner, score it.

The grader (this process) is trusted: it reads the source notebook, decides which cells run,
sends them one at a time to the runner (autograder/runner.py, started by autograder.sandbox) and
waits for each reply with a timeout. A cell that runs too long or kills the runner is recorded, a
fresh runner replays the cells that had run (tests excepted), and grading goes on with the next
cell. Which cells run: the read-only cells, the answers, the tests, and the code cells the student
added or changed; the source's own demo cells, unchanged, are skipped (they are not graded, and
the tests never depend on them).

Each test cell is scored with nbgrader's rule (nbgrader.utils.determine_grade): an error gives 0,
a number as the last value is partial credit, anything else full points. Output is not scored, so
a warning on stderr or a printed "all tests passed" changes nothing.
"""
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil
from nbformat.v4 import new_output
from nbgrader.utils import determine_grade

from . import course, notebooks, sandbox

GRADING_ENV = {
    "COURSE_PROFILE": "fast", "COURSE_DEVICE": "cpu", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1",
    "LC_ALL": "C.UTF-8",
}
DEFAULT_CELL_TIMEOUT = 60
DEFAULT_SUBMISSION_TIMEOUT = 600
MESSAGE_LIMIT = 400


class CellTimeout(Exception):
    pass


class RunnerDied(Exception):
    pass


class Session:
    """One runner process at a time for one submission."""

    def __init__(self, slot, hide, memory_mb):
        self.slot, self.hide, self.memory_mb = slot, list(hide), memory_mb
        self.proc = self.fd = None
        self.buffer = b""

    def start(self):
        import course_utils

        venv = Path(sys.prefix)
        expose = [venv, Path(course_utils.__file__).parent]
        # in the sandbox /tmp is a private tmpfs; without it, a temporary folder removed in stop()
        self.scratch = None if sandbox.isolation() == "namespaces" else tempfile.mkdtemp(prefix="grade-")
        home = self.scratch or "/tmp/work"
        env = {**GRADING_ENV, "HOME": home, "MPLCONFIGDIR": f"{home}/.mpl",
               "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        self.proc, self.fd = sandbox.start(slot=self.slot, env=env, hide=self.hide, expose=expose,
                                           memory_mb=self.memory_mb)
        self.buffer = b""

    def run(self, index, source, *, test, locked, timeout):
        request = {"index": index, "source": source, "test": test, "locked": locked}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RunnerDied()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CellTimeout()
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    raise RunnerDied()
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            raise RunnerDied()  # something wrote garbage on the protocol pipe
        if reply.get("index") != index:
            raise RunnerDied()
        return reply

    def stop(self):
        """Kill the runner and everything it started. In the sandbox that is the PID namespace's
        first process (killing it ends the namespace); `unshare` then reaps it and exits."""
        if self.proc is None:
            return
        try:
            victims = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            victims = []
        if sandbox.isolation() != "namespaces":
            victims.append(psutil.Process(self.proc.pid))
        for victim in victims:
            try:
                victim.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for closing in (self.proc.stdin.close, lambda: os.close(self.fd)):
            try:
                closing()
            except OSError:
                pass
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.proc = None


def _hidden_lines(source):
    """1-based numbers of the lines inside BEGIN/END HIDDEN TESTS."""
    hidden, inside = set(), False
    for number, line in enumerate(source.splitlines(), 1):
        if "BEGIN HIDDEN TESTS" in line:
            inside = True
        elif "END HIDDEN TESTS" in line:
            inside = False
        elif inside:
            hidden.add(number)
    return hidden


def _scrub(message, secrets, paths):
    for secret in secrets:
        message = message.replace(secret, "[hidden]")
    for path in paths:
        message = message.replace(str(path), "<course>")
    return message[:MESSAGE_LIMIT]


def _plan(graded_nb, source_nb):
    """(index, cell, kind) for each cell that runs: locked | answer | free | test."""
    demos = {c.source.strip() for c in source_nb.cells if c.cell_type == "code" and notebooks.grade_id(c) is None}
    plan = []
    for index, cell in enumerate(graded_nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if notebooks.is_test(cell):
            plan.append((index, cell, "test"))
        elif notebooks.is_answer(cell):
            plan.append((index, cell, "answer"))
        elif notebooks.grade_id(cell) is not None:
            plan.append((index, cell, "locked"))
        elif cell.source.strip() not in demos:
            plan.append((index, cell, "free"))
    return plan


def file_digest(path):
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _result(student, assignment, status, message, tests=(), notes=(), source_tests=None):
    tests = list(tests)
    if not tests and source_tests is not None:
        tests = [{"test": notebooks.grade_id(c), "score": 0.0, "max_score": float(c.metadata.nbgrader.points),
                  "error": None, "hidden": False} for c in source_tests]
    return {"student_id": student, "assignment": assignment, "status": status, "message": message,
            "score": sum(t["score"] for t in tests), "max_score": sum(t["max_score"] for t in tests),
            "tests": tests, "notes": list(notes)}


def grade_notebook(student, assignment, path, *, slot=0, hide=(), cell_timeout=DEFAULT_CELL_TIMEOUT,
                   submission_timeout=DEFAULT_SUBMISSION_TIMEOUT, memory_mb=4096, visible_only=False,
                   source_nb=None, save_to=None):
    """Grade one submitted notebook file; returns the result dict (never raises for a bad submission).

    With `visible_only` (a student's self-check) the hidden tests are removed first and the file
    need not belong to a known assignment: its own test cells are used.
    """
    if source_nb is None:
        source_nb = notebooks.read(course.source_notebook(assignment))
    if visible_only:
        source_nb = notebooks.visible_only(source_nb)
    source_tests = notebooks.tests(source_nb)
    if path is None or not Path(path).is_file():
        return _result(student, assignment, "missing", f"no notebook submitted for {assignment}",
                       source_tests=source_tests)
    try:
        submitted = nbformat.read(str(path), as_version=4)
        nbformat.validate(submitted)
    except Exception as exc:  # any unreadable file is the student's, not the batch's, problem
        return _result(student, assignment, "invalid_notebook",
                       f"{Path(path).name} is not a readable notebook: {type(exc).__name__}: {str(exc)[:200]}",
                       source_tests=source_tests)
    if not set(notebooks.answers(submitted)) & set(notebooks.answers(source_nb)):
        return _result(student, assignment, "invalid_notebook",
                       f"{Path(path).name} has none of {assignment}'s answer cells: wrong notebook submitted?",
                       source_tests=source_tests)

    graded, notes, edited = notebooks.assemble(source_nb, submitted)
    tampered, refused, restored = [], set(), set()
    plan = _plan(graded, source_nb)
    events, done, threads, exec_seconds = [], [], 1, 0.0
    session = Session(slot, hide, memory_mb)
    session.start()
    deadline = time.monotonic() + submission_timeout
    try:
        for index, cell, kind in plan:
            left = deadline - time.monotonic()
            if left < 1:
                events.append(("timeout", index, notebooks.grade_id(cell) or f"cell {index + 1}"))
                cell.outputs = [new_output("error", ename="GradingTimeout", evalue="not run: time limit", traceback=[])]
                continue
            try:
                reply = session.run(index, cell.source, test=kind == "test", locked=kind == "locked",
                                    timeout=min(cell_timeout, left))
            except (CellTimeout, RunnerDied) as exc:
                kind_of = "timeout" if isinstance(exc, CellTimeout) else "crashed"
                events.append((kind_of, index, notebooks.grade_id(cell) or f"cell {index + 1}"))
                why = (f"ran longer than {int(min(cell_timeout, left))} s and was stopped" if kind_of == "timeout"
                       else "the process died in this cell (os._exit, a crash, or out of memory)")
                cell.outputs = [new_output("error", ename="CellTimeout" if kind_of == "timeout" else "ProcessDied",
                                           evalue=why, traceback=[])]
                session.stop()
                session.start()
                for replay_index, replay_cell, replay_kind in done:
                    try:
                        session.run(replay_index, replay_cell.source, test=False, locked=replay_kind == "locked",
                                    timeout=min(cell_timeout, max(1, deadline - time.monotonic())))
                    except (CellTimeout, RunnerDied):
                        session.stop()
                        session.start()
                        break
                continue
            threads = max(threads, reply.get("threads", 1))
            exec_seconds += reply.get("seconds", 0.0)
            if reply["error"] and reply["error"]["ename"] == "MemoryError":
                events.append(("crashed", index, (notebooks.grade_id(cell) or f"cell {index + 1}") + " (out of memory)"))
            refused.update(r for r in reply.get("refused", []) if not r.startswith(("sys.", "ctypes.", "gc.", "object.")))
            if reply.get("restored"):
                restored.update(reply["restored"])
            if reply.get("tampered"):
                changed = ", ".join(reply["tampered"][:5])
                tampered.append(f"{notebooks.grade_id(cell)} (changed {changed} while the test ran)")
                reply["error"] = {"ename": "Tampering", "evalue": f"the test was voided: {changed} changed while it ran",
                                  "line": None}
            cell.outputs = []
            if reply.get("output"):
                cell.outputs.append(new_output("stream", name="stdout", text=reply["output"]))
            if reply["error"]:
                cell.outputs.append(new_output("error", traceback=[], **{k: reply["error"][k] for k in ("ename", "evalue")}))
                cell.metadata["error_line"] = reply["error"]["line"]
            elif reply["value"] is not None:
                cell.outputs.append(new_output("execute_result", data={"text/plain": repr(reply["value"])},
                                               execution_count=None))
            if kind != "test" and not reply["error"]:
                done.append((index, cell, kind))
    finally:
        session.stop()

    secrets = sorted(notebooks.secret_lines(source_nb), key=len, reverse=True)
    paths = [course.course_root(), Path(path).resolve().parent]
    tests = []
    for cell in notebooks.tests(graded):
        score, max_score = determine_grade(cell)
        error = next((o for o in cell.outputs if o.output_type == "error"), None)
        hidden_lines = _hidden_lines(next(c.source for c in source_nb.cells if notebooks.grade_id(c) == notebooks.grade_id(cell)))
        message, hidden = None, False
        if error is not None:
            hidden = cell.metadata.get("error_line") in hidden_lines
            message = _scrub(f"{error.ename}: {error.evalue}", secrets, paths)
            if hidden:
                message = f"a hidden test failed: {message}"
        tests.append({"test": notebooks.grade_id(cell), "score": float(score or 0), "max_score": float(max_score),
                      "error": message, "hidden": hidden})
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(graded, str(save_to))

    messages = list(notes)
    if threads > 1:
        notes.append(f"left {threads - 1} thread(s) running")
        messages.append(notes[-1])
    found = {kind: [name for k, _, name in events if k == kind] for kind in ("crashed", "timeout")}
    if refused:  # a limit, like time: processes, threads and the network are not available here
        found["timeout"].append(f"refused {', '.join(sorted(refused))} (no processes, threads or network)")
    problems = []
    if edited:
        problems.append(f"edited read-only cells {', '.join(edited)}; graded with the originals")
    if restored:
        problems.append(f"changed {', '.join(sorted(restored)[:5])} before the tests; put back")
    if tampered:
        problems.append(f"tampering while tests ran: {'; '.join(tampered)}; those tests scored 0")
    for kind in ("timeout", "crashed"):
        if found[kind]:
            problems.insert(0, f"{kind}: {', '.join(dict.fromkeys(found[kind]))}; the other cells were graded")
    status = next((kind for kind, hit in [("crashed", found["crashed"]), ("timeout", found["timeout"]),
                                          ("tampered", edited or restored or tampered)] if hit), "graded")
    messages = problems + messages
    result = _result(student, assignment, status, "; ".join(messages), tests, notes)
    result["exec_seconds"] = round(exec_seconds, 3)  # the cells' own run time, for benchmarks
    return result
