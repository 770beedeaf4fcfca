"""Grade one submission: assemble the graded notebook, run it, score it.

The grader (this process) is trusted and runs no notebook code itself. It reads the source
notebook, decides which cells run, and drives two processes forked for the submission: the runner
(autograder/runner.py, sandboxed) runs the student's code, one cell at a time; the judge
(autograder/judge.py) runs each test cell, and hands the grader the `with student:` blocks it
reaches, which the grader passes to the runner and whose replies it passes back, as bytes. Every
reply is waited for within a CPU-time limit and a wall-clock backstop. A cell or block that runs too
long or kills the runner is recorded, a fresh runner replays every cell that had run, and grading
goes on with the next cell. Which cells run: the read-only cells, the answers, the tests, and the
code cells the student added or changed; the source's own demo cells, unchanged, are skipped (they
are not graded, and the tests never depend on them).

Each test cell is scored with nbgrader's rule (nbgrader.utils.determine_grade) on what the judge
reports: an error gives 0, a number as the last value is partial credit, anything else full
points. Output is not scored, so a warning on stderr or a printed "all tests passed" changes nothing.
"""
import ast
import functools
import hashlib
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import nbformat
import psutil
from nbformat.v4 import new_output
from nbgrader.utils import determine_grade

from . import codec, course, judge, notebooks, sandbox

GRADING_ENV = {
    "COURSE_PROFILE": "fast", "COURSE_DEVICE": "cpu", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1",
    "LC_ALL": "C.UTF-8",
}
DEFAULT_CELL_TIMEOUT = 60
DEFAULT_SUBMISSION_TIMEOUT = 600
MESSAGE_LIMIT = 400
SUBMISSION_OUTPUT_LIMIT = 200_000  # characters of output kept in one graded notebook


class CellTimeout(Exception):
    pass


class RunnerDied(Exception):
    """The runner (or the judge) is gone, or said something that is not a reply."""


@functools.lru_cache(maxsize=4096)  # the source's cells are the same in every submission
def _transform(source):
    """IPython syntax (magics, !shell) turned into plain calls on the runner's stand-in shell."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def _backstop(limit):
    """Wall-clock seconds after which a cell is stopped whatever its CPU time (it may be asleep)."""
    return 3 * limit + 30


def _env(home):
    """The environment of a runner or a judge (the same but for HOME: they share one fork server)."""
    return {**GRADING_ENV, "HOME": home, "MPLCONFIGDIR": f"{home}/.mpl",
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}


class Pipe:
    """Length-prefixed msgpack frames from a child process, read within wall and CPU limits."""

    def __init__(self, fd, cpu=lambda: 0.0):
        self.fd, self.cpu, self.buffer = fd, cpu, b""

    def _fill(self, need, wall_limit, cpu_limit):
        start_wall, start_cpu = time.monotonic(), self.cpu() if cpu_limit is not None else 0.0
        while len(self.buffer) < need:
            if time.monotonic() - start_wall > wall_limit:
                raise CellTimeout()
            if cpu_limit is not None and self.cpu() - start_cpu > cpu_limit:
                raise CellTimeout()
            ready, _, _ = select.select([self.fd], [], [], 0.25 if cpu_limit is not None else 1.0)
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    raise RunnerDied()
                self.buffer += chunk

    def line(self, wall_limit):
        """The first line: "pid N", written by the fork server's child."""
        start = time.monotonic()
        while b"\n" not in self.buffer:
            if len(self.buffer) > 100:
                raise RunnerDied()
            self._fill(len(self.buffer) + 1, max(0.0, wall_limit - (time.monotonic() - start)), None)
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def frame(self, wall_limit, cpu_limit=None):
        """The next frame's bytes (not decoded: the caller decides how far it trusts them)."""
        deadline = time.monotonic() + wall_limit
        self._fill(4, wall_limit, cpu_limit)
        size = int.from_bytes(self.buffer[:4], "big")
        if size > codec.LIMIT:
            raise RunnerDied()
        self._fill(4 + size, max(0.0, deadline - time.monotonic()), cpu_limit)
        frame, self.buffer = self.buffer[4:4 + size], self.buffer[4 + size:]
        return frame


def _data(frame):
    """A runner's frame as a dict of plain data (msgpack only: nothing in it can run), or RunnerDied."""
    try:
        reply = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception:
        raise RunnerDied() from None
    if not isinstance(reply, dict):
        raise RunnerDied()
    return reply


class Session:
    """One runner process at a time for one submission.

    Limits count the runner's CPU time, so a busy machine does not turn an honest cell into a
    timeout; a generous wall-clock backstop (3 x the limit + 30 s) stops code that sleeps. The clock
    of the first cell starts when the runner says it is ready. Nothing the runner sends is trusted:
    replies are msgpack data, and a reply that does not parse or answers another request ends the
    runner (status crashed)."""

    STARTUP_TIMEOUT = 600  # wall seconds for a runner to start on a loaded machine

    def __init__(self, slot, memory_mb, modules=()):
        self.slot, self.memory_mb, self.modules = slot, memory_mb, list(modules)
        self.proc = self.pipe = self.pid = None

    def start(self):
        venv = Path(sys.prefix)
        expose = [venv, course.course_utils_dir()]
        # in the sandbox /tmp is a private tmpfs; without it, a temporary folder removed in stop()
        self.scratch = None if sandbox.isolation() == "namespaces" else tempfile.mkdtemp(prefix="grade-")
        self.proc = sandbox.start(slot=self.slot, env=_env(self.scratch or "/tmp/work"), expose=expose, memory_mb=self.memory_mb,
                                  modules=self.modules)
        self.pid = None
        self.pipe = Pipe(self.proc.fd, self._cpu)
        first = self.pipe.line(wall_limit=self.STARTUP_TIMEOUT)  # "pid N", written before the runner starts
        if not first.startswith(b"pid "):
            raise RunnerDied()
        self.pid = self.proc.pid = int(first[4:])
        ready = _data(self.pipe.frame(self.STARTUP_TIMEOUT))
        if ready.get("ready") is not True:
            raise RunnerDied(str(ready.get("startup_error", "the runner did not start"))[:500])

    def _cpu(self):
        try:
            times = psutil.Process(self.pid).cpu_times()
            return times.user + times.system
        except (psutil.NoSuchProcess, TypeError, ValueError):
            return 0.0

    def _send(self, message):
        if self.proc is None:
            raise RunnerDied()
        try:
            self.proc.send(len(frame := msgpack.packb(message, use_bin_type=True)).to_bytes(4, "big") + frame)
        except OSError:  # BrokenPipeError: the runner is gone
            raise RunnerDied()

    def request(self, message, timeout):
        """Send a request; (raw frame, reply as data, CPU seconds used). `timeout` is its CPU-time
        limit; its wall backstop is derived from it."""
        self._send(message)
        cpu = self._cpu()
        frame = self.pipe.frame(wall_limit=_backstop(timeout), cpu_limit=timeout)
        reply = _data(frame)
        if reply.get("index") != message["index"]:
            raise RunnerDied()
        return frame, reply, max(0.0, self._cpu() - cpu)

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


class JudgeProcess:
    """The submission's judge (autograder.judge), forked from the fork server: trusted, but a
    fault in it is the grader's, never the student's."""

    TIMEOUT = 900  # wall seconds for one test's own work, on a loaded machine

    def __init__(self, modules):
        self.modules, self.proc = modules, None

    def start(self):
        self.proc = sandbox.start_judge(env=_env(tempfile.gettempdir()), modules=self.modules)
        self.pipe = Pipe(self.proc.fd)
        first = self.pipe.line(wall_limit=Session.STARTUP_TIMEOUT)
        if not first.startswith(b"pid "):
            raise RunnerDied()
        self.proc.pid = int(first[4:])

    def send(self, message):
        try:
            self.proc.send(len(frame := msgpack.packb(message, use_bin_type=True)).to_bytes(4, "big") + frame)
        except OSError:
            raise RunnerDied()

    def receive(self):
        return msgpack.unpackb(self.pipe.frame(self.TIMEOUT), raw=False)

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.close()
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


def batch_modules(assignments):
    """Every module the source notebooks of `assignments` import: what the one fork server of a batch
    imports for all its submissions (only these: importing the whole course's libraries for a class of
    one assignment would cost its start-up a second and a half)."""
    names = set()
    for assignment in assignments:
        try:
            names |= imported_modules(notebooks.read(course.source_notebook(assignment)))
        except (OSError, SystemExit, ValueError):
            pass
    return sorted(names)


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


def grade_notebook(student, assignment, path, *, slot, cell_timeout=DEFAULT_CELL_TIMEOUT,
                   submission_timeout=DEFAULT_SUBMISSION_TIMEOUT, memory_mb=4096, visible_only=False,
                   source_nb=None, save_to=None, modules=()):
    """Grade one submitted notebook file; returns the result dict (never raises for a bad submission).

    With `visible_only` (a student's self-check) the hidden tests are removed first and the file
    need not belong to a known assignment: its own test cells are used. `slot`: a sandbox slot
    the caller holds (`sandbox.claim_slot()`). `modules`: what the batch's fork server imports
    (`batch_modules`), besides what this notebook imports.
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

    graded, notes, edited, unanswered = notebooks.assemble(source_nb, submitted)
    plan = _plan(graded, source_nb)
    events, faults, done, exec_seconds, cpu_used, output_left = [], [], [], 0.0, 0.0, SUBMISSION_OUTPUT_LIMIT
    cell_errors = []  # cells other than tests that raised: none may, in the reference
    modules = sorted(imported_modules(source_nb) | set(modules))
    read_only = [(i, _transform(c.source)) for i, c in enumerate(source_nb.cells)
                 if c.cell_type == "code" and notebooks.is_fixed(c) and not notebooks.is_test(c)]
    # names only answer cells define; one a read-only cell defines too (`import torch.nn.functional as F`
    # again in an answer) is the judge's own, as in the source, whichever notebook the answers come from
    names = sorted(judge.student_names(tuple(notebooks.answers(source_nb).values()))
                   - judge.student_names(tuple(code for _, code in read_only)))
    session, judge_process = Session(slot, memory_mb, modules), JudgeProcess(modules)
    wall_deadline = time.monotonic() + _backstop(submission_timeout)

    def restart():
        """A fresh runner with every cell that had run again (they had finished, with or without an error)."""
        session.stop()
        session.start()
        for replay_index, replay_cell in done:
            session.request(_cell_request(replay_index, replay_cell.source), cell_timeout)

    def failed(exc, index, name, limit):
        kind_of = "timeout" if isinstance(exc, CellTimeout) else "crashed"
        events.append((kind_of, index, name))
        try:
            restart()
        except (CellTimeout, RunnerDied):
            session.stop()  # the next cells then fail to run, and say so
        return kind_of, (f"used more than {int(limit)} s of CPU time (or sat idle far longer) and was stopped"
                         if kind_of == "timeout" else "the process died here (os._exit, a crash, or out of memory)")

    def keep(text):
        """What is kept of a cell's output: the submission's output is capped in total too."""
        nonlocal output_left
        if output_left <= 0:
            return ""
        kept = text[:output_left]
        output_left -= len(text)
        return kept + (f"\n[... output dropped from here on: this submission's {SUBMISSION_OUTPUT_LIMIT} "
                       "characters are used up]" if output_left < 0 else "")

    try:
        for attempt in range(3):  # a start that fails is the grader's problem: try again before giving up
            try:
                session.start()
                judge_process.start()
                judge_process.send({"op": "setup", "cells": read_only})
                ready = judge_process.receive()
                faults += [f"the judge's {e}" for e in ready.get("errors", [])]
                break
            except (CellTimeout, RunnerDied) as exc:
                session.stop()
                judge_process.stop()
                if attempt == 2:
                    return _result(student, assignment, "grader_error",
                                   f"the grading processes could not start ({exc or type(exc).__name__}); "
                                   "grade again", source_tests=source_tests)
                time.sleep(1 + attempt)
        for index, cell, kind in plan:
            left = min(submission_timeout - cpu_used, wall_deadline - time.monotonic())
            name = notebooks.grade_id(cell) or f"cell {index + 1}"
            if left < 1:
                events.append(("timeout", index, name))
                cell.outputs = [new_output("error", ename="GradingTimeout", evalue="not run: time limit", traceback=[])]
                continue
            if kind == "test":
                outcome, used, seconds = _run_test(session, judge_process, index, cell, names,
                                                   min(cell_timeout, left), failed, keep)
                cpu_used += used
                exec_seconds += seconds
                error = outcome["error"]
                if error and error.get("fault"):
                    faults.append(f"{name}: {error['ename']}: {error['evalue']}"[:400])
                cell.outputs = []
                if outcome["output"]:
                    cell.outputs.append(new_output("stream", name="stdout", text=outcome["output"]))
                if error:
                    cell.outputs.append(new_output("error", ename=error["ename"], evalue=error["evalue"], traceback=[]))
                    cell.metadata["error_hidden"] = bool(error.get("hidden"))
                elif outcome["value"] is not None:
                    cell.outputs.append(new_output("execute_result", data={"text/plain": repr(outcome["value"])},
                                                   execution_count=None))
                continue
            start = time.monotonic()
            try:
                _, reply, used = session.request(_cell_request(index, cell.source), min(cell_timeout, left))
            except (CellTimeout, RunnerDied) as exc:
                kind_of, why = failed(exc, index, name, min(cell_timeout, left))
                cell.outputs = [new_output("error", ename="CellTimeout" if kind_of == "timeout" else "ProcessDied",
                                           evalue=why, traceback=[])]
                continue
            exec_seconds += time.monotonic() - start
            cpu_used += used
            error = reply.get("error") if isinstance(reply.get("error"), dict) else None
            if error and error.get("ename") == "MemoryError":
                events.append(("crashed", index, name + " (out of memory)"))
            cell.outputs = []
            output = keep(reply["output"]) if isinstance(reply.get("output"), str) else ""
            if output:
                cell.outputs.append(new_output("stream", name="stdout", text=output))
            if error:
                cell.outputs.append(new_output("error", ename=str(error.get("ename"))[:200],
                                               evalue=str(error.get("evalue"))[:2000], traceback=[]))
                cell_errors.append(f"{name}: {error.get('ename')}: {error.get('evalue')}"[:300])
            done.append((index, cell))
    except (CellTimeout, RunnerDied):  # the judge failed: the grader's fault, not the student's
        faults.append("the judge process failed")
    finally:
        session.stop()
        judge_process.stop()

    secrets = sorted(notebooks.secret_lines(source_nb), key=len, reverse=True)
    paths = [course.course_root(), Path(path).resolve().parent]
    tests = []
    for cell in notebooks.tests(graded):
        score, max_score = determine_grade(cell)
        error = next((o for o in cell.outputs if o.output_type == "error"), None)
        message, hidden = None, False
        if error is not None:
            hidden = bool(cell.metadata.get("error_hidden"))
            message = _scrub(f"{error.ename}: {error.evalue}", secrets, paths)
            if hidden:
                message = f"a hidden test failed: {message}"
        tests.append({"test": notebooks.grade_id(cell), "score": float(score or 0), "max_score": float(max_score),
                      "error": message, "hidden": hidden})
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(graded, str(save_to))

    found = {kind: [name for k, _, name in events if k == kind] for kind in ("crashed", "timeout")}
    problems = []
    if faults:
        problems.append(f"the grader failed, not the student (needs a look): {'; '.join(dict.fromkeys(faults))}")
    if edited:
        problems.append(f"edited read-only cells {', '.join(edited)}; graded with the originals")
    for kind in ("timeout", "crashed"):
        if found[kind]:
            problems.insert(len(faults and [1]), f"{kind}: {', '.join(dict.fromkeys(found[kind]))}; the other cells were graded")
    status = next((kind for kind, hit in [("grader_error", faults), ("crashed", found["crashed"]),
                                          ("timeout", found["timeout"]), ("tampered", edited)] if hit), "graded")
    result = _result(student, assignment, status, "; ".join(problems + list(notes)), tests, notes)
    result["cell_errors"] = cell_errors
    result["unanswered"] = unanswered  # answer cells as released: all of them is a bare release
    result["exec_seconds"] = round(exec_seconds, 3)  # the runner's own time, for benchmarks
    result["cpu_seconds"] = round(cpu_used, 3)
    return result


def _cell_request(index, source):
    return {"index": index, "body": _transform(source), "name": f"<cell-{index}>"}


def _run_test(session, judge_process, index, cell, names, limit, failed, keep):
    """One test cell: the judge runs it, and each `with student:` block it reaches runs in the
    runner within what is left of the cell's CPU-time limit. (outcome, runner CPU s, runner wall s)."""
    judge_process.send({"op": "test", "index": index, "source": _transform(cell.source),
                        "name": notebooks.grade_id(cell), "student_names": names})
    shown, used, seconds = [], 0.0, 0.0
    while True:
        message = judge_process.receive()
        if message.get("op") == "done":
            break
        left = limit - used
        if left <= 0:
            judge_process.send({"op": "failed", "why": f"the test's {int(limit)} s of CPU time were used up"})
            continue
        request = {"index": index, "test": index, "block": message["block"], "name": f"<test-{index}>",
                   "inputs": message["inputs"], "outputs": message["outputs"]}
        start = time.monotonic()
        try:
            frame, reply, cpu = session.request(request, left)
        except (CellTimeout, RunnerDied) as exc:
            _, why = failed(exc, index, notebooks.grade_id(cell), left)
            judge_process.send({"op": "failed", "why": f"your code {why}"})
            continue
        used += cpu
        seconds += time.monotonic() - start
        if not message.get("hidden") and isinstance(reply.get("output"), str) and reply["output"]:
            shown.append(reply["output"])  # what the student's code printed in a visible test
        judge_process.send({"op": "reply", "data": frame})
    message["output"] = keep("".join(shown) + message.get("output", ""))
    return message, used, seconds
