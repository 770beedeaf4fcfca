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

import nbformat
import pytest

from autograder import notebooks, sandbox
from conftest import BIN, autograder, copy_toy_course

WRONG = "def double_array(x):\n    return x * 3\n"
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
        "patch_modules": ({"double_array": "import torch, numpy as np, course_utils.testing as t\n"
                           "torch.allclose = lambda *a, **k: True\nnp.allclose = np.array_equal = lambda *a, **k: True\n"
                           "t.check_close = lambda *a, **k: None\n" + WRONG}, 3, "tampered"),
        "rebind_names": ({"double_array": "check_close = lambda *a, **k: None\n" + WRONG}, 3, "tampered"),
        "patch_during_test": ({"double_array": (
            "def double_array(x):\n    import numpy, torch, course_utils.testing as t\n    global check_close\n"
            "    if x.shape == (3,) and x[1] == 1.0:\n        return 2 * x\n"
            "    check_close = t.check_close = lambda *a, **k: None\n"
            "    numpy.allclose = numpy.array_equal = torch.allclose = lambda *a, **k: True\n    return x * 3\n")},
            3, "tampered"),
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
            "    try:\n        sys.settrace(skip)\n    except RuntimeError:\n        pass\n    return x * 3\n")}, 3, "tampered"),
        "prints_pass": ({"double_array": "print('test_double_array passed\\nAll tests passed!')\n" + WRONG}, 3, "graded"),
        "reads_and_writes": ({"double_array": (
            "import os\nleaked = []\ndef _try(f):\n    try:\n        f()\n        leaked.append(1)\n    except Exception:\n        pass\n"
            f"if True:\n{reads}\n{writes}\n"
            "def double_array(x):\n    return 2 * x if leaked else 3 * x\n")}, 3, "graded"),
        "network": ({"double_array": (
            "import socket\nreached = False\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {server_port}), timeout=2).close()\n    reached = True\n"
            "except Exception:\n    pass\ndef double_array(x):\n    return 2 * x if reached else 3 * x\n")}, 3, "timeout"),
        "sigint_proof_loop": ({"square": "import signal\ntry:\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                               "except RuntimeError:\n    pass\nwhile True:\n"
                               "    try:\n        pass\n    except KeyboardInterrupt:\n        pass\n"}, 4, "timeout"),
        "fork_bomb": ({"square": "import os\nwhile True:\n    os.fork()\n"}, 4, "timeout"),
        "thread_left": ({"double_array": "import threading, time\ndef double_array(x):\n    return 2 * x\n"
                         "threading.Thread(target=lambda: time.sleep(1000), daemon=True).start()\n"}, 5, "timeout"),
        "segfault": ({"square": "import faulthandler\nfaulthandler._read_null()\n"}, 4, "crashed"),
        "os_exit": ({"square": "import os\nos._exit(3)\n"}, 4, "crashed"),
        "out_of_memory": ({"square": "hog = bytearray(16 * 2**30)\n"}, 4, "crashed"),
        "huge_output": ({"square": "print('x' * 30_000_000)\nfor i in range(200_000):\n    print(i)\n"
                         "def square(x):\n    return x * x\n"}, 5, "graded"),
        "stderr_noise": ({"add": "import sys, warnings\ndef add(a, b):\n    print('debug', file=sys.stderr)\n"
                          "    warnings.warn('noisy')\n    return a + b\n"}, 5, "graded"),
        "system_exit": ({"square": "raise SystemExit(0)\n"}, 4, "graded"),
        **runner_attacks(),
    }


# Routes towards the runner itself (the process that executes the cells and reports their results).
# In an answer cell, each one is tried and the wrong answer defined after it; in `*_during_test`, a
# CORRECT double_array tries the route while test_double_array calls it: the test is voided (0), so
# no route gains a point, and the submission is `tampered`.
ROUTES = {
    # the exploit: the runner's functions through its module
    "runner_module": "import sys\n_m = sys.modules['__main__']\n_m.run_cell = _m.serve = lambda *a, **k: None\n"
                     "for _mod in list(sys.modules.values()):\n"
                     "    for _name in ('serve', 'run_cell', '_write', '_frames'):\n"
                     "        if hasattr(_mod, _name):\n            setattr(_mod, _name, lambda *a, **k: None)\n",
    "traceback_frames": "try:\n    1 / 0\nexcept ZeroDivisionError as _e:\n    _f = _e.__traceback__.tb_frame\n"
                        "    while _f is not None:\n        _f.f_globals['_write'] = lambda *a: None\n        _f = _f.f_back\n",
    "getframe": "import sys\n_f = sys._getframe(0)\nwhile _f is not None:\n"
                "    _f.f_globals.get('__builtins__', {})\n    _f = _f.f_back\n",
    "generator_frame": "def _g():\n    yield\n_gen = _g()\n_f = _gen.gi_frame\n",
    "serialisation": "import builtins, json, marshal\njson.dumps = lambda *a, **k: '{\"error\": null}'\n"
                     "marshal.loads = lambda *a, **k: {'test': False, 'body': 'pass'}\n"
                     "builtins.repr = lambda *a: \"{'index': 0, 'error': None}\"\n",
    "forged_pipe": "import os\nfor _fd in range(0, 64):\n    for _line in (b'{\"index\": 5, \"error\": null}\\n', "
                   "b\"x {'index': 5, 'error': None, 'value': None}\\n\"):\n"
                   "        try:\n            os.write(_fd, _line)\n        except OSError:\n            pass\n",
    "proc_pipe": "open('/proc/self/fd/3', 'wb').write(b'{}\\n')\n",
    "proc_mem": "open('/proc/self/mem', 'rb')\n",
    "heap_walk": "import gc\n[o for o in gc.get_objects() if isinstance(o, dict) and 'nonce' in o]\n",
    "ctypes": "import ctypes\nctypes.pythonapi.PyGILState_Ensure()\n",
    "fresh_signal_module": "import _imp, importlib.machinery\n"
                           "_imp.create_builtin(importlib.machinery.ModuleSpec('_signal', None))\n",
    "audit_hook": "import sys\nsys.addaudithook(lambda event, args: None)\n",
}


def runner_attacks():
    table = {}
    for route, code in ROUTES.items():
        body = "    " + code.replace("\n", "\n    ").rstrip() + "\n"
        table[f"runner_{route}"] = ({"double_array": f"try:\n{body}except Exception:\n    pass\n" + WRONG}, 3,
                                    "graded" if route == "runner_module" else "tampered")
        inner = "        " + code.replace("\n", "\n        ").rstrip() + "\n"
        # a route that leads nowhere changes nothing: the correct answer keeps its points
        table[f"runner_{route}_during_test"] = ({"double_array": (
            f"def double_array(x):\n    try:\n{inner}    except Exception:\n        pass\n    return 2 * x\n")},
            *((5, "graded") if route == "runner_module" else (3, "tampered")))
    table["runner_serialisation_plain"] = ({"double_array": "import json, marshal\njson.dumps = json.loads = lambda *a: 0\n"
                                            "marshal.loads = marshal.dumps = lambda *a: 0\n" + WRONG}, 3, "graded")
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
        nbformat.write(notebooks.fill(release, {**notebooks.answers(source), **overrides}), str(path))
    broken = _broken_notebooks(source, release)
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
    assert "torch.allclose" in grades["patch_modules"]["message"]
    assert "while tests ran" in grades["patch_during_test"]["message"]
    assert "os.fork" in grades["fork_bomb"]["message"]
    assert "socket.connect" in grades["network"]["message"]
    assert "starting a thread" in grades["thread_left"]["message"]
    assert "out of memory" in grades["out_of_memory"]["message"]
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
    root, subs, out, grades, expected, hits = batch
    graded = out / "autograded/huge_output/00_toy/00_toy.ipynb"
    assert graded.stat().st_size < 200_000


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
