"""Hostile, broken and slow submissions against `autograder grade` (the threats in the README's
instructor guide). Every row has its exact expected score and status; an honest submission in the
same batch keeps full marks. Toy course: test_add 2 points, test_square 1, test_double_array 2."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograder import notebooks, sandbox
from conftest import BIN, autograder, copy_toy_course

WRONG = "def double_array(x):\n    return x * 3\n"
STUB = "def {name}(*args):\n    raise NotImplementedError('{name} is not answered yet')\n"
SANDBOXED = sandbox.isolation() == "namespaces"
UID_BASE = "63000"  # the attack batch's own sandbox users, apart from those of tests running beside it


def attacks(root, subs, out, server_port):
    secret_paths = [root / "notebooks/00_toy/00_toy.ipynb", subs / "honest/00_toy/00_toy.ipynb",
                    out / "results", "/root/.bash_history"]
    reads = "\n".join(f"    _try(lambda: open({str(p)!r}).read() or os.listdir({str(p)!r}))" for p in secret_paths)
    writes = "\n".join(f"    _try(lambda: open({str(p / 'pwned.txt')!r}, 'w').write('x'))" for p in (root, subs, out))
    return {
        # student: (answer overrides, expected score, expected status)
        "honest": ({}, 5, "graded"),
        # patched comparisons, in the student's process: the judge's are its own
        "patch_modules": ({"double_array": "import torch, numpy as np, course_utils.testing as t\n"
                           "torch.allclose = lambda *a, **k: True\nnp.allclose = np.array_equal = lambda *a, **k: True\n"
                           "t.check_close = lambda *a, **k: None\n" + WRONG}, 3, "graded"),
        "rebind_names": ({"double_array": "check_close = lambda *a, **k: None\n" + WRONG}, 3, "graded"),
        "patch_during_test": ({"double_array": (
            "def double_array(x):\n    import numpy, torch, course_utils.testing as t\n    global check_close\n"
            "    if x.shape == (3,) and x[1] == 1.0:\n        return 2 * x\n"
            "    check_close = t.check_close = lambda *a, **k: None\n"
            "    numpy.allclose = numpy.array_equal = torch.allclose = lambda *a, **k: True\n    return x * 3\n")},
            3, "graded"),
        "library_internals": ({"double_array": (
            "import numpy, torch\nnumpy._core.numeric.isclose = lambda *a, **k: numpy.ones(numpy.shape(a[0]), bool)\n"
            "numpy.random.default_rng = lambda *a, **k: numpy.random.Generator(numpy.random.PCG64(0))\n"
            "torch._C._nn.cross_entropy_loss = lambda *a, **k: torch.tensor(0.0)\n" + WRONG)}, 3, "graded"),
        "shadowed_builtins": ({"double_array": "range = lambda *a: []\nlen = lambda x: 0\nisinstance = lambda *a: True\n"
                               "all = any = lambda *a: True\n" + WRONG}, 3, "graded"),
        "ipython_hooks": ({"double_array": (
            "ip = get_ipython()\nfor attack in (lambda: ip.input_transformers_cleanup.append(lambda lines: ['pass\\n']),\n"
            "               lambda: ip.ast_transformers.append(None), lambda: ip.events.register('pre_run_cell', print),\n"
            "               lambda: ip.set_custom_exc((Exception,), lambda *a, **k: None),\n"
            "               lambda: setattr(ip, 'showtraceback', lambda *a, **k: None)):\n"
            "    try:\n        attack()\n    except Exception:\n        pass\n" + WRONG)}, 3, "graded"),
        "always_equal": ({"double_array": (
            "class Liar(np.ndarray):\n    def __eq__(self, other):\n        return np.ones(self.shape, bool)\n"
            "    def __bool__(self):\n        return True\n"
            "def double_array(x):\n    return np.zeros(x.shape).view(Liar)\n")}, 3, "graded"),
        "nan_result": ({"double_array": "def double_array(x):\n    return np.full_like(x, np.nan)\n"}, 3, "graded"),
        "float32": ({"double_array": "def double_array(x):\n    return (2 * x).astype(np.float32)\n"}, 3, "graded"),
        "settrace_skip": ({"double_array": (
            "import sys\ndef double_array(x):\n    def skip(frame, event, arg):\n        return None\n"
            "    sys.settrace(skip)\n    return x * 3\n")}, 3, "graded"),
        "prints_pass": ({"double_array": "print('test_double_array passed\\nAll tests passed!')\n" + WRONG}, 3, "graded"),
        # the host is not there: every read and write fails, so the answer stays wrong
        "reads_and_writes": ({"double_array": (
            "import os\nleaked = []\ndef _try(f):\n    try:\n        f()\n        leaked.append(1)\n    except Exception:\n        pass\n"
            f"if True:\n{reads}\n{writes}\n"
            "def double_array(x):\n    return 2 * x if leaked else 3 * x\n")}, 3, "graded"),
        "network": ({"double_array": (
            "import socket\nreached = False\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {server_port}), timeout=2).close()\n    reached = True\n"
            "except Exception:\n    pass\ndef double_array(x):\n    return 2 * x if reached else 3 * x\n")}, 3, "graded"),
        # a spy: during the tests, the caller's frames and the namespace hold only the inputs (the
        # expected values live in the judge), so copying any other array it finds is wrong
        "spy": ({"double_array": (
            "import sys\ndef double_array(x):\n    seen = [v for f in (sys._getframe(1), sys._getframe(2))\n"
            "            for v in list(f.f_locals.values()) + list(f.f_globals.values())\n"
            "            if isinstance(v, np.ndarray) and v is not x and v.shape == x.shape]\n"
            "    return seen[0] if seen else 3 * x\n")}, 3, "graded"),
        "sigint_proof_loop": ({"square": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n"
                               "    try:\n        pass\n    except KeyboardInterrupt:\n        pass\n"}, 4, "timeout"),
        "fork_bomb": ({"square": "import os\nwhile True:\n    os.fork()\n"}, 4, "graded"),
        "thread_left": ({"double_array": "import threading, time\ndef double_array(x):\n    return 2 * x\n"
                         "threading.Thread(target=lambda: time.sleep(1000), daemon=True).start()\n"}, 5, "graded"),
        "segfault": ({"square": "import faulthandler\nfaulthandler._read_null()\n"}, 4, "crashed"),
        "os_exit": ({"square": "import os\nos._exit(3)\n"}, 4, "crashed"),
        "exit_in_test": ({"double_array": "import os\ndef double_array(x):\n    os._exit(3)\n"}, 3, "crashed"),
        "out_of_memory": ({"square": "hog = bytearray(16 * 2**30)\n"}, 4, "crashed"),
        "huge_output": ({"square": "print('x' * 30_000_000)\nfor i in range(200_000):\n    print(i)\n"
                         "def square(x):\n    return x * x\n"}, 5, "graded"),
        "stderr_noise": ({"add": "import sys, warnings\ndef add(a, b):\n    print('debug', file=sys.stderr)\n"
                          "    warnings.warn('noisy')\n    return a + b\n"}, 5, "graded"),
        "system_exit": ({"square": "raise SystemExit(0)\n"}, 4, "graded"),
        "exfiltrate": ({"double_array": (
            "import sys\ndef double_array(x):\n    if x.shape == (3,) and x[1] == 1.0:\n        return 2 * x\n"
            "    seen = []\n    f = sys._getframe(0)\n    while f is not None:\n"
            "        seen += [repr(f.f_locals)[:3000], repr(f.f_code.co_consts)[:3000]]\n        f = f.f_back\n"
            "    raise RuntimeError(' | '.join(seen))\n")}, 3, "graded"),
        "poisoned_before_setup": ({"double_array": WRONG}, 3, "graded"),
        **takeovers(),
    }


# The runner holds nothing worth taking: student code may own it completely (its reply writer, its
# request parser, the pipe to the grader). Each route is tried in an answer cell with the wrong
# answer after it, and in a bare release (every answer a stub): neither gains a point.
TAKEOVERS = {
    # every block "succeeds" and hands back whatever the test's names are asked for
    "reply_writer": "import autograder.runner as _r, autograder.codec as _c\n"
                    "def _fake(request, namespace):\n"
                    "    return {'index': request['index'], 'error': None,\n"
                    "            'values': {n: _c.encode(3) for n in request.get('outputs', [])}, 'inputs': {}}\n"
                    "_r.run = _fake\n",
    # the runner's globals reached through its frames (sys._getframe walks up out of the cell)
    "frames": "import sys\n_f = sys._getframe(0)\nwhile _f is not None and 'serve' not in _f.f_globals:\n"
              "    _f = _f.f_back\n"
              "_c = _f.f_globals['codec']\n"
              "_f.f_globals['run'] = lambda request, ns: {'index': request['index'], 'error': None, 'inputs': {},\n"
              "    'values': {n: _c.encode(3) for n in request.get('outputs', [])}}\n",
    # forged frames on the grader's pipe, through cffi (raises no audit event) and os.write
    "cffi_forged_replies": "import cffi, msgpack\n_ffi = cffi.FFI()\n_ffi.cdef('long write(int, const void *, size_t);')\n"
                           "_libc = _ffi.dlopen(None)\n"
                           "for _i in range(40):\n"
                           "    _m = msgpack.packb({'index': _i, 'error': None, 'values': {}, 'inputs': {}, 'output': ''})\n"
                           "    _b = len(_m).to_bytes(4, 'big') + _m\n    _libc.write(3, _b, len(_b))\n",
    # a fake course_utils.testing put in place before anything imports it
    "sys_modules": "import sys, types\n_fake = types.ModuleType('course_utils.testing')\n"
                   "_fake.check_close = _fake.check_shape = lambda *a, **k: None\n"
                   "sys.modules['course_utils.testing'] = _fake\n",
}


# (score, status) beside the wrong double_array (the last exercise: add and square were graded before
# the takeover), and in the bare release. Forged frames on the pipe are a crash of that cell (the
# runner is replaced, the rest graded as it was).
TAKEOVER_GRADES = {"reply_writer": ((3, "graded"), (0, "graded")), "frames": ((3, "graded"), (0, "graded")),
                   "cffi_forged_replies": ((3, "crashed"), (0, "crashed")), "sys_modules": ((3, "graded"), (0, "graded"))}


# cells the student puts before everything else, the setup cell included
FIRST_CELLS = {
    "poisoned_before_setup": "import sys, types, contextlib\n_fake = types.ModuleType('course_utils.testing')\n"
                             "_fake.check_close = _fake.check_shape = lambda *a, **k: None\n"
                             "_fake.student = contextlib.nullcontext()\nsys.modules['course_utils.testing'] = _fake\n",
}


def takeovers():
    table = {}
    for route, code in TAKEOVERS.items():
        body = "    " + code.replace("\n", "\n    ").rstrip() + "\n"
        guarded = f"try:\n{body}except Exception:\n    pass\n"
        beside, bare = TAKEOVER_GRADES[route]
        table[f"takeover_{route}"] = ({"double_array": guarded + WRONG}, *beside)
        table[f"bare_takeover_{route}"] = ({"add": guarded + STUB.format(name="add"), "square": STUB.format(name="square"),
                                            "double_array": STUB.format(name="double_array")}, *bare)
    return table


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    root = copy_toy_course(tmp)
    subs, out = tmp / "submitted", tmp / "grading"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    hits = []
    threading.Thread(target=lambda: _accept(server, hits), daemon=True).start()
    table = attacks(root, subs, out, server.getsockname()[1])
    source = notebooks.read(root / "notebooks/00_toy/00_toy.ipynb")
    release = notebooks.student_version(source)
    for student, (overrides, _, _) in table.items():
        path = subs / student / "00_toy/00_toy.ipynb"
        path.parent.mkdir(parents=True)
        nb = notebooks.fill(release, {**notebooks.answers(source), **overrides})
        if student in FIRST_CELLS:
            nb.cells.insert(0, nbformat.v4.new_code_cell(FIRST_CELLS[student]))
        nbformat.write(nb, str(path))
    broken = _broken_notebooks(source, release)
    broken["amplified"] = (_amplified(notebooks.fill(release, notebooks.answers(source))), 5, "graded")
    for student, (nb, _, _) in broken.items():
        path = subs / student / "00_toy/00_toy.ipynb"
        path.parent.mkdir(parents=True)
        if isinstance(nb, str):
            path.write_text(nb)
        else:
            nbformat.write(nb, str(path), version=nb.nbformat)
    run = autograder("grade", subs, "--out", out, "--workers", 2, "--cell-timeout", 5, cwd=root, timeout=900,
                     env={"AUTOGRADER_UID_BASE": UID_BASE})
    assert run.returncode == 0, run.stdout + run.stderr
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        grades = {row["student_id"]: row for row in csv.DictReader(handle)}
    server.close()
    expected = {s: (score, status) for s, (_, score, status) in {**table, **broken}.items()}
    return root, subs, out, grades, expected, hits


def _amplified(nb):
    """2,500 cells of 30,000 characters of output each: 75 MB, from a 0.4 MB notebook."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.cells.extend(nbformat.v4.new_code_cell(f"print('{i}' * 30_000)") for i in range(2500))
    return nb


def _accept(server, hits):
    while True:
        try:
            conn, _ = server.accept()
            hits.append(1)
            conn.close()
        except socket.timeout:
            continue
        except OSError:
            return


def _broken_notebooks(source, release):
    answered = notebooks.fill(release, notebooks.answers(source))

    def edited(change):
        nb = nbformat.from_dict(json.loads(json.dumps(answered)))
        change(nb)
        return nb

    def cell(nb, gid):
        return next(c for c in nb.cells if notebooks.grade_id(c) == gid)

    def strip_test_metadata(nb):
        c = cell(nb, "test_square")
        c.metadata = {}
        c.source = "pass"

    def more_points(nb):
        cell(nb, "test_add").metadata.nbgrader["points"] = 100

    def duplicate_test(nb):
        nb.cells.insert(4, nbformat.from_dict(json.loads(json.dumps(cell(nb, "test_add")))))

    def reorder(nb):
        nb.cells.reverse()

    old = nbformat.convert(nbformat.from_dict(json.loads(json.dumps(answered))), 3)
    return {  # student: (notebook or raw text, score, status)
        "stripped_test_metadata": (edited(strip_test_metadata), 5, "graded"),
        "changed_points": (edited(more_points), 5, "tampered"),
        "duplicated_test": (edited(duplicate_test), 5, "graded"),
        "reordered": (edited(reorder), 5, "graded"),
        "old_nbformat": (old, 5, "graded"),
        "empty_file": ("", 0, "invalid_notebook"),
        "not_json": ("{'cells': oops", 0, "invalid_notebook"),
    }


def test_each_attack_gets_its_exact_grade_and_status(batch):
    root, subs, out, grades, expected, hits = batch
    if not SANDBOXED:
        pytest.skip("needs root and unshare: " + sandbox.isolation())
    wrong = {s: (float(grades[s]["score"]), grades[s]["status"]) for s in expected
             if (float(grades[s]["score"]), grades[s]["status"]) != expected[s]}
    assert not wrong, "\n".join(f"{s}: got {wrong[s]}, expected {expected[s]}: {grades[s]['message']}" for s in wrong)
    assert all(float(grades[s]["max_score"]) == 5 for s in expected)


def test_messages_say_what_happened(batch):
    root, subs, out, grades, expected, hits = batch
    assert "out of memory" in grades["out_of_memory"]["message"]
    assert "test_double_array" in grades["exit_in_test"]["message"]
    assert "square" in grades["segfault"]["message"] and "square" in grades["sigint_proof_loop"]["message"]
    assert "test_square was missing" in grades["stripped_test_metadata"]["message"]
    assert "test_add" in grades["changed_points"]["message"]
    assert "reordered" in grades["reordered"]["message"]


def test_nothing_escaped_the_sandbox(batch):
    root, subs, out, grades, expected, hits = batch
    if not SANDBOXED:
        pytest.skip("needs root and unshare")
    assert not hits, "student code reached a server on the grading machine's loopback"
    for folder in (root, subs, out):
        assert not (folder / "pwned.txt").exists()
    # no process of a grading user is left
    import psutil
    base = int(UID_BASE)  # this batch's own sandbox users: other tests grade beside it
    assert not [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and base <= p.info["uids"].real < base + sandbox.SLOTS]


def test_output_is_capped(batch):
    """Per cell, and per submission in total (many cells each under the per-cell cap)."""
    root, subs, out, grades, expected, hits = batch
    assert (out / "autograded/huge_output/00_toy/00_toy.ipynb").stat().st_size < 200_000
    submitted = (subs / "amplified/00_toy/00_toy.ipynb").stat().st_size
    graded = (out / "autograded/amplified/00_toy/00_toy.ipynb").stat().st_size
    assert graded < submitted + 400_000, (submitted, graded)


def test_no_test_text_reaches_the_feedback(batch):
    """What only the judge holds (assertion messages, expected values) never reaches a student, and
    the hidden lines a block sends to the runner are scrubbed from messages. The `exfiltrate` student
    raises, in every call, an error carrying everything its process can see."""
    root, subs, out, grades, expected, hits = batch
    source = notebooks.read(root / "notebooks/00_toy/00_toy.ipynb")
    secrets = notebooks.secret_lines(source) | {"hidden double_array", "add(-5, 5) should be 0"}
    for student in ("exfiltrate", "spy", "takeover_frames"):
        text = (out / "feedback" / student / "00_toy.html").read_text() + grades[student]["message"]
        leaked = [line for line in secrets if line in text]
        assert not leaked, (student, leaked)
    assert "a hidden test failed" in (out / "feedback/exfiltrate/00_toy.html").read_text()


def test_a_bare_release_scores_nothing_whatever_else_it_holds(batch):
    root, subs, out, grades, expected, hits = batch
    bare = [s for s in grades if s.startswith("bare_takeover_")]
    assert len(bare) == len(TAKEOVERS)
    assert all(float(grades[s]["score"]) == 0 for s in bare), {s: grades[s]["score"] for s in bare}


def test_regrading_elsewhere_gives_the_same_grades(batch, tmp_path):
    root, subs, out, grades, expected, hits = batch
    keep = ["honest", "patch_modules", "always_equal", "segfault", "reordered", "stderr_noise"]
    subset = tmp_path / "subset"
    for student in keep:
        (subset / student).mkdir(parents=True)
        os.symlink(subs / student / "00_toy", subset / student / "00_toy")
    again = tmp_path / "again"
    run = autograder("grade", subset, "--out", again, "--workers", 1, "--cell-timeout", 5, cwd=root, timeout=600)
    assert run.returncode == 0, run.stderr
    with open(again / "grades.csv", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            first = grades[row["student_id"]]
            assert (row["score"], row["status"]) == (first["score"], first["status"]), row["student_id"]
    with open(out / "scores.csv", encoding="utf-8-sig") as a, open(again / "scores.csv", encoding="utf-8-sig") as b:
        rows = [r for r in csv.DictReader(a) if r["student_id"] in keep]
        assert rows == list(csv.DictReader(b))


def test_a_killed_batch_finishes_on_restart(tmp_path):
    root = copy_toy_course(tmp_path)
    source = notebooks.read(root / "notebooks/00_toy/00_toy.ipynb")
    release = notebooks.student_version(source)
    subs = tmp_path / "submitted"
    for i in range(8):
        answers = {**notebooks.answers(source), **({"add": "def add(a, b):\n    return a - b\n"} if i % 2 else {})}
        path = subs / f"s{i}" / "00_toy/00_toy.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(notebooks.fill(release, answers), str(path))
    out = tmp_path / "grading"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "autograder"), "grade", str(subs), "--out", str(out), "--workers", "1"],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("results/*/*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("results/*/*.json")))
    assert 3 <= done_before < 8
    run = autograder("grade", subs, "--out", out, "--workers", 2, cwd=root)
    assert run.returncode == 0, run.stderr
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student_id"] for r in rows] == [f"s{i}" for i in range(8)]
    assert [float(r["score"]) for r in rows] == [5 if i % 2 == 0 else 3 for i in range(8)]
    assert all(r["status"] == "graded" for r in rows)


def test_honest_code_keeps_full_marks_on_a_busy_machine(tmp_path):
    """Limits count the runner's CPU time, from the moment it is ready: a machine saturated by
    other jobs (here two busy loops per core) does not turn an honest cell into a timeout. The
    answer cell does 1 CPU second of honest work under a 2 s limit: at a third of a core or less it
    takes well over 2 s of wall time, so a wall-clock limit would fail it."""
    root = copy_toy_course(tmp_path)
    source = notebooks.read(root / "notebooks/00_toy/00_toy.ipynb")
    release = notebooks.student_version(source)
    slow_add = ("import time\n_start = time.process_time()\nwhile time.process_time() - _start < 1.0:\n    pass\n\n"
                "def add(a, b):\n    return a + b\n")
    path = tmp_path / "submitted/s0/00_toy/00_toy.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(notebooks.fill(release, {**notebooks.answers(source), "add": slow_add}), str(path))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        run = autograder("grade", tmp_path / "submitted", "--out", tmp_path / "out", "--workers", 1,
                         "--cell-timeout", 2, cwd=root, timeout=900)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "out/grades.csv", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [(float(r["score"]), r["status"]) for r in rows] == [(5.0, "graded")], rows


# full marks only if the traces were really left: /tmp, /dev/shm, the home folder and a segment
LEAVE = ("import os, ctypes\nleft = []\n"
         "for _p in ('/tmp/trace', '/dev/shm/trace', '/var/tmp/trace', '/run/lock/trace', '/var/lock/trace',\n"
         "           os.path.expanduser('~/trace')):\n"
         "    try:\n        open(_p, 'w').write('left by an earlier submission')\n        left.append(_p)\n"
         "    except OSError:\n        pass\n"
         "_libc = ctypes.CDLL(None, use_errno=True)\n"
         "if _libc.shmget(0x5eed, 4096, 0o1000 | 0o666) != -1:  # IPC_CREAT: a System V segment outlives its process\n"
         "    left.append('shm')\n"
         "def add(a, b):\n    return a + b if len(left) >= 4 else a - b\n")
LOOK = ("import os, ctypes\n"
        "found = [_p for _p in ('/tmp/trace', '/dev/shm/trace', '/var/tmp/trace', '/run/lock/trace', '/var/lock/trace',\n"
        "                       os.path.expanduser('~/trace')) if os.path.exists(_p)]\n"
        "if ctypes.CDLL(None, use_errno=True).shmget(0x5eed, 0, 0) != -1:\n    found.append('shm')\n"
        "def add(a, b):\n    return a - b if found else a + b\n")


def _grade_toy(tmp_path, answers_by_student, *args, python=None, stamps=None):
    root = copy_toy_course(tmp_path)
    source = notebooks.read(root / "notebooks/00_toy/00_toy.ipynb")
    release = notebooks.student_version(source)
    for student, answers in answers_by_student.items():
        path = tmp_path / "submitted" / student / "00_toy/00_toy.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(notebooks.fill(release, {**notebooks.answers(source), **answers}), str(path))
        if stamps and student in stamps:
            (path.parent / "timestamp.txt").write_text(stamps[student])
    command = ["grade", tmp_path / "submitted", "--out", tmp_path / "out", *args]
    if python is None:
        run = autograder(*command, cwd=root, timeout=900)
    else:  # the CLI started by another path to the same environment
        env = {**os.environ, "PATH": f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}"}
        env.pop("COURSE_ROOT", None)
        run = subprocess.run([str(python), "-c", "import sys; from autograder.cli import main; sys.exit(main())",
                              *map(str, command)], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "out/grades.csv", encoding="utf-8-sig") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def test_nothing_one_submission_leaves_reaches_the_next(tmp_path):
    """Files in every writable place, and a System V shared-memory segment, left by one submission
    are gone for the next one graded by the same sandbox user (one worker: the same slot)."""
    if not SANDBOXED:
        pytest.skip("needs root and unshare")
    grades = _grade_toy(tmp_path, {"a_leaves": {"add": LEAVE}, "b_looks": {"add": LOOK}}, "--workers", 1)
    assert [(float(g["score"]), g["status"]) for g in grades.values()] == [(5.0, "graded"), (5.0, "graded")], grades


def test_a_symlinked_environment_grades_like_the_real_one(tmp_path):
    """Python started through a symlink under /tmp: the runner sees the environment at both paths,
    so a library imported lazily inside a hidden test (here by the answer) still imports."""
    link = tmp_path / "venv-link"
    link.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    lazy = "def double_array(x):\n    import tqdm.contrib.itertools  # not imported before grading\n    return 2 * x\n"
    grades = _grade_toy(tmp_path, {"lazy": {"double_array": lazy}}, "--workers", 1, python=link / "bin/python")
    assert (float(grades["lazy"]["score"]), grades["lazy"]["status"]) == (5.0, "graded"), grades


def test_a_hostile_timestamp_is_one_students_note(tmp_path):
    grades = _grade_toy(tmp_path, {"early": {}, "overflow": {}}, "--workers", 1, "--due", "2026-12-01T23:59+01:00",
                        stamps={"overflow": "9999-12-31 23:59:59-14:00", "early": "2026-11-30 10:00:00"})
    assert [(float(g["score"]), g["status"]) for g in grades.values()] == [(5.0, "graded"), (5.0, "graded")]
    assert grades["early"]["late_minutes"] == "" or grades["early"]["late_minutes"] == "0"
    assert "timestamp.txt unreadable" in grades["overflow"]["message"]
