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
import ast
import functools
import hashlib
import json
import marshal
import os
import select
import shutil
import signal
import secrets
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


@functools.lru_cache(maxsize=4096)  # the source's cells are the same in every submission
def _transform(source):
    """IPython syntax (magics, !shell) turned into plain calls on the runner's stand-in shell: done
    here, in the trusted grader, so that student code cannot change how a test is read."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def request(index, source, *, test, locked):
    """What the runner executes for a cell: its code, with a test's last expression split off
    (nbgrader's partial credit is that expression's value when it is a number)."""
    body, last = _split_last(source) if test else (_transform(source), None)
    return {"index": index, "body": body, "last": last, "name": f"<cell-{index}>", "test": test, "locked": locked}


@functools.lru_cache(maxsize=4096)
def _split_last(source):
    """A test cell's code without its last expression, and that expression (or None)."""
    body, last = _transform(source), None
    try:
        tree = ast.parse(body)
    except SyntaxError:
        tree = None
    if tree is not None and tree.body and isinstance(tree.body[-1], ast.Expr):
        node = tree.body[-1]
        lines = body.splitlines(keepends=True)
        segment = ast.get_source_segment(body, node)
        body = "".join(lines[:node.lineno - 1]) + lines[node.lineno - 1][:node.col_offset]
        last = "\n" * (node.lineno - 1) + segment
    return body, last


def _backstop(limit):
    """Wall-clock seconds after which a cell is stopped whatever its CPU time (it may be asleep)."""
    return 3 * limit + 30


class Session:
    """One runner process at a time for one submission.

    Limits count the runner's CPU time, so a busy machine does not turn an honest cell into a
    timeout; a generous wall-clock backstop (3 x the limit + 30 s) stops code that sleeps. The clock
    of the first cell starts when the runner says it is ready (imports and snapshots done)."""

    STARTUP_TIMEOUT = 600  # wall seconds for a runner to import torch and get ready, on a loaded machine
    LINE_LIMIT = 1 << 20

    def __init__(self, slot, hide, memory_mb, modules=()):
        self.slot, self.hide, self.memory_mb, self.modules = slot, list(hide), memory_mb, list(modules)
        self.proc = self.fd = self.pid = None
        self.buffer = b""
        self.forged = 0

    def start(self):
        venv = Path(sys.prefix)
        expose = [venv, course.course_utils_dir()]
        # in the sandbox /tmp is a private tmpfs; without it, a temporary folder removed in stop()
        self.scratch = None if sandbox.isolation() == "namespaces" else tempfile.mkdtemp(prefix="grade-")
        home = self.scratch or "/tmp/work"
        env = {**GRADING_ENV, "HOME": home, "MPLCONFIGDIR": f"{home}/.mpl",
               "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        self.proc = sandbox.start(slot=self.slot, env=env, hide=self.hide, expose=expose, memory_mb=self.memory_mb,
                                  modules=self.modules)
        self.fd, self.buffer, self.pid = self.proc.fd, b"", None
        first = self._line(wall_limit=self.STARTUP_TIMEOUT)  # "pid N", written before the runner starts
        if not first.startswith(b"pid "):
            raise RunnerDied()
        self.pid = self.proc.pid = int(first[4:])
        self.nonce = secrets.token_hex(16)
        self.prefix = (self.nonce + " ").encode()
        self._send(self.nonce)
        ready = self._reply(cpu_limit=None, wall_limit=self.STARTUP_TIMEOUT)
        if ready.get("ready") is not True:
            raise RunnerDied()

    def _cpu(self):
        try:
            times = psutil.Process(self.pid).cpu_times()
            return times.user + times.system
        except (psutil.NoSuchProcess, TypeError, ValueError):
            return 0.0

    def _send(self, message):
        if self.proc is None:
            raise RunnerDied()
        frame = marshal.dumps(message)
        try:
            self.proc.send(len(frame).to_bytes(4, "big") + frame)
        except OSError:  # BrokenPipeError: the runner is gone
            raise RunnerDied()

    def _line(self, wall_limit, cpu_limit=None):
        """The next line on the reply pipe, within the limits."""
        start_wall, start_cpu = time.monotonic(), self._cpu() if cpu_limit is not None else 0.0
        while b"\n" not in self.buffer:
            if len(self.buffer) > self.LINE_LIMIT:
                self.forged += 1
                raise RunnerDied()
            if time.monotonic() - start_wall > wall_limit:
                raise CellTimeout()
            if cpu_limit is not None and self._cpu() - start_cpu > cpu_limit:
                raise CellTimeout()
            ready, _, _ = select.select([self.fd], [], [], 0.25)
            if ready:
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    raise RunnerDied()
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def _reply(self, cpu_limit, wall_limit):
        """The next line that carries the nonce; lines that do not (written by student code) are
        counted as forged and skipped."""
        deadline = time.monotonic() + wall_limit
        while True:
            line = self._line(max(0.0, deadline - time.monotonic()), cpu_limit)
            if not line.startswith(self.prefix):
                self.forged += 1
                continue
            try:
                reply = ast.literal_eval(line[len(self.prefix):].decode("utf-8", "replace"))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise RunnerDied()
            if not isinstance(reply, dict):
                raise RunnerDied()
            return reply

    def run(self, index, source, *, test, locked, timeout, cpu_timeout=None):
        """Run one cell; `timeout` is the cell's CPU-time limit, its wall backstop is derived from it."""
        self._send(request(index, source, test=test, locked=locked))
        reply = self._reply(cpu_limit=cpu_timeout if cpu_timeout is not None else timeout,
                            wall_limit=_backstop(timeout))
        if reply.get("index") != index:
            raise RunnerDied()
        return reply

    def stop(self):
        """Kill the runner and everything it started: in the sandbox it is the PID namespace's first
        process (killing it ends the namespace), elsewhere the leader of its own session."""
        if self.proc is None:
            return
        if self.proc.pid:
            self.proc.kill()
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.close()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.proc = None


def imported_modules(nb):
    """The modules a notebook's code cells import (what the fork server imports once for all)."""
    return set().union(*(_imports(cell.source) for cell in nb.cells if cell.cell_type == "code"))


@functools.lru_cache(maxsize=4096)
def _imports(source):
    names = set()
    try:
        tree = ast.parse(_transform(source))
    except SyntaxError:
        return frozenset()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def _course_modules(root):
    """Every module the course's source notebooks import: one fork server serves them all."""
    names = set()
    try:
        for assignment in course.assignments():
            names |= imported_modules(notebooks.read(course.source_notebook(assignment)))
    except (OSError, SystemExit, ValueError):
        pass
    return names


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


def grade_notebook(student, assignment, path, *, slot, hide=(), cell_timeout=DEFAULT_CELL_TIMEOUT,
                   submission_timeout=DEFAULT_SUBMISSION_TIMEOUT, memory_mb=4096, visible_only=False,
                   source_nb=None, save_to=None):
    """Grade one submitted notebook file; returns the result dict (never raises for a bad submission).

    With `visible_only` (a student's self-check) the hidden tests are removed first and the file
    need not belong to a known assignment: its own test cells are used. `slot`: a sandbox slot
    the caller holds (`sandbox.claim_slot()`).
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
    tampered, refused, restored, reached = [], set(), set(), []
    plan = _plan(graded, source_nb)
    events, done, threads, exec_seconds, cpu_used = [], [], 1, 0.0, 0.0
    modules = sorted(imported_modules(source_nb) | (set() if visible_only else _course_modules(course.course_root())))
    session = Session(slot, hide, memory_mb, modules)
    wall_deadline = time.monotonic() + _backstop(submission_timeout)

    def restart():
        session.stop()
        session.start()
        for replay_index, replay_cell, replay_kind in done:  # the cells that had run, tests excepted
            session.run(replay_index, replay_cell.source, test=False, locked=replay_kind == "locked",
                        timeout=cell_timeout)

    try:
        try:
            session.start()
        except (CellTimeout, RunnerDied):
            session.stop()
            return _result(student, assignment, "crashed", "the grading process could not start; try again",
                           source_tests=source_tests)
        for index, cell, kind in plan:
            left = min(submission_timeout - cpu_used, wall_deadline - time.monotonic())
            name = notebooks.grade_id(cell) or f"cell {index + 1}"
            if left < 1:
                events.append(("timeout", index, name))
                cell.outputs = [new_output("error", ename="GradingTimeout", evalue="not run: time limit", traceback=[])]
                continue
            forged = session.forged
            try:
                reply = session.run(index, cell.source, test=kind == "test", locked=kind == "locked",
                                    timeout=min(cell_timeout, left))
            except (CellTimeout, RunnerDied) as exc:
                kind_of = "timeout" if isinstance(exc, CellTimeout) else "crashed"
                events.append((kind_of, index, name))
                why = (f"used more than {int(min(cell_timeout, left))} s of CPU time (or sat idle far longer) "
                       "and was stopped" if kind_of == "timeout"
                       else "the process died in this cell (os._exit, a crash, or out of memory)")
                cell.outputs = [new_output("error", ename="CellTimeout" if kind_of == "timeout" else "ProcessDied",
                                           evalue=why, traceback=[])]
                try:
                    restart()
                except (CellTimeout, RunnerDied):
                    session.stop()  # the next cells then fail to run, and say so
                continue
            threads = max(threads, reply.get("threads", 1))
            exec_seconds += reply.get("seconds", 0.0)
            cpu_used += reply.get("cpu_seconds", 0.0)
            if reply["error"] and reply["error"]["ename"] == "MemoryError":
                events.append(("crashed", index, name + " (out of memory)"))
            refused.update(reply.get("refused", []))
            restored.update(reply.get("restored", []))
            reached += [f"{name}: {what}" for what in dict.fromkeys(reply.get("reached", []))]
            voided = [f"changed {what}" for what in dict.fromkeys(reply.get("tampered", []))]
            voided += [f"tried {what}" for what in dict.fromkeys(reply.get("reached", []))]
            if session.forged > forged:
                reached.append(f"{name}: wrote {session.forged - forged} forged line(s) on the grader's pipe")
                voided.append("wrote forged replies on the grader's pipe")
            if voided and kind == "test":
                what = ", ".join(voided[:5])
                tampered.append(f"{notebooks.grade_id(cell)} ({what} while the test ran)")
                reply["error"] = {"ename": "Tampering", "evalue": f"the test was voided: {what} while it ran",
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
    reached = [r for r in dict.fromkeys(reached) if not any(r.startswith(f"{t.split(' ')[0]}:") for t in tampered)]
    if reached:
        problems.append(f"tried to reach the grader (refused): {'; '.join(reached)}")
    for kind in ("timeout", "crashed"):
        if found[kind]:
            problems.insert(0, f"{kind}: {', '.join(dict.fromkeys(found[kind]))}; the other cells were graded")
    status = next((kind for kind, hit in [("crashed", found["crashed"]), ("timeout", found["timeout"]),
                                          ("tampered", edited or restored or tampered or reached)] if hit), "graded")
    messages = problems + messages
    result = _result(student, assignment, status, "; ".join(messages), tests, notes)
    result["exec_seconds"] = round(exec_seconds, 3)  # the cells' own run time, for benchmarks
    result["cpu_seconds"] = round(cpu_used, 3)
    return result
