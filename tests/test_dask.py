"""`autograder grade --scheduler ADDRESS`: grading on a dask.distributed cluster.

A LocalCluster of 2 worker processes on loopback (dashboard off) stands in for any cluster. Its
workers get COURSE_ROOT pointing at an empty folder: they cannot read the course, so everything a
task needs (the submission's bytes, the source notebook) travels with it. Toy course: test_add 2
points, test_square 1, test_double_array 2."""
import csv
import os
import signal
import threading
import time

import dask
import distributed
import nbformat
import pytest

from autograder import cli, notebooks
from conftest import copy_toy_course

SOURCE = "notebooks/00_toy/00_toy.ipynb"
SLOW = "import time\ntime.sleep(4)\ndef square(x):\n    return x * x\n"  # 4 s of wall time, no CPU


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    no_course = tmp_path_factory.mktemp("worker-without-course")
    quiet = {  # an idle 2-worker cluster burns 11 CPU s a minute by default (profiler, ticks), 1.4 so
        "distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
        "distributed.worker.memory.monitor-interval": "1s", "distributed.admin.system-monitor.interval": "5s",
        "distributed.scheduler.work-stealing": False,
        # a LocalCluster drops a nanny whose worker is not back within lost-worker-timeout (15 s):
        # a killed worker restarting on a busy machine takes longer
        "distributed.deploy.lost-worker-timeout": "600s"}
    with dask.config.set(quiet), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=None, local_directory=str(tmp_path_factory.mktemp("dask")),
                                     env={"COURSE_ROOT": str(no_course), "OMP_NUM_THREADS": "1"}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=600)
        assert set(client.run(lambda: os.environ.get("COURSE_ROOT")).values()) == {str(no_course)}
        yield cluster, client


def _class(root, folder, students):
    source = notebooks.read(root / SOURCE)
    release = notebooks.student_version(source)
    for student, answers in students.items():
        path = folder / student / "00_toy" / "00_toy.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        if answers is None:
            continue  # an empty folder: missing
        if isinstance(answers, str):
            path.write_text(answers)  # not a notebook
        else:
            nbformat.write(notebooks.fill(release, {**notebooks.answers(source), **answers}), str(path))
    return folder


def _grade(root, monkeypatch, *args):
    """The CLI in this process (its imports are paid already), from the course folder."""
    monkeypatch.chdir(root)
    monkeypatch.delenv("COURSE_ROOT", raising=False)
    return cli.main(["grade", *map(str, args)])


def _rows(out):
    with open(out / "grades.csv", encoding="utf-8-sig") as handle:
        return {r["student_id"]: (float(r["score"]), r["status"], r["message"]) for r in csv.DictReader(handle)}


def test_a_cluster_grades_byte_for_byte_like_local_workers(cluster, tmp_path, monkeypatch, capsys):
    cluster, client = cluster
    root = copy_toy_course(tmp_path)
    subs = _class(root, tmp_path / "submitted", {
        "alice": {}, "carol": {"add": "def add(a, b):\n    return a - b\n"},
        "heidi": {"square": "import os\nos._exit(1)\n"}, "frank": '{"cells": [', "judy": None})
    local, dask_out = tmp_path / "local", tmp_path / "dask"
    assert _grade(root, monkeypatch, subs, "--out", local, "--workers", 1) == 0
    assert _grade(root, monkeypatch, subs, "--out", dask_out, "--scheduler", cluster.scheduler_address) == 0
    printed = capsys.readouterr().out
    assert "on the Dask cluster at tcp://127.0.0.1:" in printed and "(2 worker(s), 2 thread(s))" in printed
    assert "0 already graded (results/), 5 sent to the cluster" in printed
    for name in ("grades.csv", "scores.csv", "feedback/carol/00_toy.html", "feedback/heidi/00_toy.html"):
        assert (dask_out / name).read_bytes() == (local / name).read_bytes(), name
    for student in ("alice", "heidi"):  # the graded notebooks, outputs included (a kept cell gets a fresh id)
        graded = [nbformat.read(str(folder / f"autograded/{student}/00_toy/00_toy.ipynb"), 4)
                  for folder in (local, dask_out)]
        for nb in graded:
            for cell in nb.cells:
                cell.pop("id", None)
        assert graded[0] == graded[1], student
    rows = _rows(dask_out)
    assert {s: r[:2] for s, r in rows.items()} == {
        "alice": (5, "graded"), "carol": (3, "graded"), "heidi": (4, "crashed"),
        "frank": (0, "invalid_notebook"), "judy": (0, "missing")}

    # an interrupted batch (a result never written): the re-run sends only that one
    (dask_out / "results/carol/00_toy.json").unlink()
    before = {p: p.stat().st_mtime_ns for p in (dask_out / "results").glob("*/*.json")}
    assert _grade(root, monkeypatch, subs, "--out", dask_out, "--scheduler", cluster.scheduler_address) == 0
    assert "4 already graded (results/), 1 sent to the cluster" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # the others untouched
    for name in ("grades.csv", "scores.csv"):
        assert (dask_out / name).read_bytes() == (local / name).read_bytes(), name


def _coordinator(*args):
    """`_grade(*args)` in a thread (this test kills a worker meanwhile); its outcome in a list."""
    outcome = []

    def run():
        try:
            outcome.append(_grade(*args))
        except BaseException as exc:  # shown by the assertion on the outcome
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _executing(client):
    """{worker address: keys of the tasks it is running now}."""
    return client.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing])


def _kill_the_worker_running(client, student, timeout=600):
    """Wait until a worker is running `student`'s task, 1 s into it, then SIGKILL that worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = [addr for addr, keys in _executing(client).items() if any(f"grade-{student}/" in k for k in keys)]
        if hits:
            time.sleep(1)
            pid = client.run(os.getpid, workers=hits)[hits[0]]
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.1)
    raise AssertionError(f"no worker ever ran {student}'s task")


def test_a_worker_killed_mid_task_loses_nothing(cluster, tmp_path, monkeypatch, capsys):
    cluster, client = cluster
    root = copy_toy_course(tmp_path)
    subs = _class(root, tmp_path / "submitted", {"wrong": {"add": "def add(a, b):\n    return a - b\n"},
                                                 "slow": {"square": SLOW}})
    out = tmp_path / "grading"
    expected = {"wrong": (3, "graded"), "slow": (5, "graded")}

    # 1. the worker grading `slow` dies mid-task: the scheduler runs that task again on a live worker
    coordinator, outcome = _coordinator(root, monkeypatch, subs, "--out", out, "--scheduler", cluster.scheduler_address)
    killed = _kill_the_worker_running(client, "slow")
    coordinator.join(600)
    assert outcome == [0]
    assert "0 already graded (results/), 2 sent to the cluster" in capsys.readouterr().out
    assert {s: r[:2] for s, r in _rows(out).items()} == expected
    assert len(list(out.glob("results/*/*.json"))) == 2
    assert killed not in client.run(os.getpid).values()  # (its nanny starts a fresh one meanwhile)

    # 2. a task whose workers keep dying (here: the scheduler allows no failure) is recorded
    #    `crashed`, never dropped, and not stored, so the next run grades it
    _class(root, subs, {"slow2": {"square": SLOW}})
    allowed, cluster.scheduler.allowed_failures = cluster.scheduler.allowed_failures, 0
    try:
        coordinator, outcome = _coordinator(root, monkeypatch, subs, "--out", out, "--scheduler",
                                            cluster.scheduler_address)
        _kill_the_worker_running(client, "slow2")
        coordinator.join(600)
    finally:
        cluster.scheduler.allowed_failures = allowed
    assert outcome == [0]
    assert "2 already graded (results/), 1 sent to the cluster" in capsys.readouterr().out
    score, state, message = _rows(out)["slow2"]
    assert (score, state) == (0, "crashed") and "KilledWorker" in message and "run the same command again" in message
    assert not (out / "results/slow2/00_toy.json").exists()

    # 3. the re-run grades only what is missing
    client.wait_for_workers(1, timeout=600)
    assert _grade(root, monkeypatch, subs, "--out", out, "--scheduler", cluster.scheduler_address) == 0
    assert "2 already graded (results/), 1 sent to the cluster" in capsys.readouterr().out
    assert {s: r[:2] for s, r in _rows(out).items()} == {**expected, "slow2": (5, "graded")}


def test_an_unreachable_scheduler_is_a_clear_error(toy_course, tmp_path, monkeypatch):
    subs = _class(toy_course, tmp_path / "submitted", {"ok": {}})
    with pytest.raises(SystemExit, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        _grade(toy_course, monkeypatch, subs, "--out", tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9")


AWKWARD = ["José", "Zoë-ß", "名前", "ana maria", "=cmd", "+1", "00123", "1e5", "TRUE"]   # graded as they are
REFUSED = {".dotstudent": "hidden folder", " padded": "white space", "x" * 129: "longer than 128"}


def test_a_class_of_awkward_folders_gets_one_row_each_locally_and_on_the_cluster(cluster, tmp_path, monkeypatch):
    """Every folder of the tree ends as exactly one row: unicode, spaces, formula-like and numeric ids
    graded; names the gradebook cannot take, a .txt instead of the notebook, an empty folder and a loose
    file each reported; the same rows locally and on the cluster; ids typed as text in grades.xlsx."""
    from openpyxl import load_workbook

    cluster, client = cluster
    root = copy_toy_course(tmp_path)
    subs = _class(root, tmp_path / "submitted", {**{s: {} for s in [*AWKWARD, *REFUSED]}, "bare": None})
    monkeypatch.chdir(root)  # the course's own stub text
    release = notebooks.student_version(notebooks.read(root / SOURCE))
    nbformat.write(release, str(subs / "bare" / "00_toy" / "00_toy.ipynb"))  # handed in untouched
    (subs / "txt" / "00_toy").mkdir(parents=True)
    (subs / "txt" / "00_toy" / "answers.txt").write_text("I did it on paper")
    (subs / "nothing").mkdir()
    (subs / "fifo" / "00_toy").mkdir(parents=True)
    os.mkfifo(subs / "fifo" / "00_toy" / "00_toy.ipynb")  # reading it would block the whole command
    (subs / "notes.pdf").write_bytes(b"%PDF")
    local, dask_out = tmp_path / "local", tmp_path / "dask"
    assert _grade(root, monkeypatch, subs, "--out", local, "--workers", 2) == 0
    assert _grade(root, monkeypatch, subs, "--out", dask_out, "--scheduler", cluster.scheduler_address) == 0
    for name in ("grades.csv", "scores.csv", "report.html"):
        assert (dask_out / name).read_bytes() == (local / name).read_bytes(), name
    assert set(client.run(lambda: len(__import__("autograder.sandbox").sandbox.ForkServer._servers)).values()) == {1}

    rows = _rows(local)
    folders = [p.name for p in subs.iterdir() if p.is_dir()]
    assert len(rows) == len(folders) == len(AWKWARD) + len(REFUSED) + 4
    for student in AWKWARD:
        shown = "'" + student if student[0] == "=" else student  # a spreadsheet must not run it
        assert rows[shown][:2] == (5, "graded"), student
    for student, why in REFUSED.items():
        score, status, message = rows[student]
        assert status == "invalid_id" and why in message and "rename the folder" in message, student
    assert rows["bare"][:2] == (0, "graded")
    assert rows["txt"][1] == "missing" and "answers.txt" in rows["txt"][2]
    assert rows["nothing"][1] == "missing" and "empty" in rows["nothing"][2]
    assert rows["fifo"][1] == "missing" and "00_toy.ipynb" in rows["fifo"][2]

    sheet = load_workbook(local / "grades.xlsx").active
    ids = {c.value: c for c in next(sheet.iter_cols(min_col=1, max_col=1, min_row=2))}
    for student in [*AWKWARD, *REFUSED]:
        assert ids[student].data_type == "s", student   # 00123, 1e5, TRUE, =cmd: text, as written
    page = (local / "report.html").read_text()
    assert "notes.pdf" in page                                          # a file that names no student
    assert "no answer changed" in page and "feedback/bare/00_toy.html" in page
    assert page.count("invalid_id") >= len(REFUSED) and "answers.txt" in page
    assert "feedback/Jos%C3%A9/00_toy.html" not in page                 # graded in full: not listed


def _readme_cluster_commands():
    """The README's one-machine cluster commands (scheduler, workers, grade), as written."""
    import re
    from conftest import REPO
    text = (REPO / "README.md").read_text()
    block = re.search(r"\*\*One machine\*\*.*?```bash\n(.*?)```", text, re.S).group(1)
    return [line.strip().rstrip("&").strip() for line in block.strip().splitlines()]


def _listening(proc):
    import psutil
    found = set()
    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        found |= {(c.laddr.ip, c.laddr.port) for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    return found


def test_the_readme_cluster_commands_listen_on_loopback_only(toy_course, tmp_path, monkeypatch, capsys):
    """Run the README's commands (free ports, 2 worker processes): every socket the scheduler and the
    workers listen on is on 127.0.0.1, and grading through them warns of nothing; a scheduler started
    the old way (`--no-dashboard`) serves HTTP on 0.0.0.0, and grade warns."""
    import shlex
    import socket
    import subprocess
    from conftest import BIN

    scheduler_cmd, worker_cmd, grade_cmd = _readme_cluster_commands()
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    swap = lambda cmd: shlex.split(cmd.replace("8786", str(ports[0])).replace("8787", str(ports[1]))
                                   .replace("--nworkers 8", "--nworkers 2"))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    started = []
    try:
        started.append(subprocess.Popen(swap(scheduler_cmd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started.append(subprocess.Popen(swap(worker_cmd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = f"tcp://127.0.0.1:{ports[0]}"
        with distributed.Client(address, timeout=120, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=300)
            listening = set().union(*map(_listening, started))
            assert len(listening) >= 2 + 2 * 2 and {ip for ip, _ in listening} == {"127.0.0.1"}, listening
        subs = _class(toy_course, tmp_path / "submitted", {"alice": {}})
        args = swap(grade_cmd)[2:]
        args[args.index("submitted")] = subs
        args[args.index("grading")] = tmp_path / "grading"
        assert _grade(toy_course, monkeypatch, *args) == 0
        assert "WARNING" not in capsys.readouterr().err
        assert _rows(tmp_path / "grading")["alice"][:2] == (5, "graded")
    finally:
        for proc in started[::-1]:
            proc.terminate()
            proc.wait(timeout=60)

    old = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(ports[0]),
                            "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with distributed.Client(f"tcp://127.0.0.1:{ports[0]}", timeout=120, set_as_default=False) as client:
            from autograder import batch
            exposed = batch.http_exposure(client)
        assert exposed and all("0.0.0.0" in line or "::" in line for line in exposed), exposed
    finally:
        old.terminate()
        old.wait(timeout=60)


def test_a_worker_with_other_course_code_is_refused(cluster, tmp_path, monkeypatch, capsys):
    """A worker whose course_utils differs from the coordinator's (another install, an editable
    install pointing at another checkout) would grade differently: the command stops and says where."""
    from autograder import batch

    cluster, client = cluster
    root = copy_toy_course(tmp_path)
    subs = _class(root, tmp_path / "submitted", {"alice": {}})
    real = batch.course_code
    monkeypatch.setattr(batch, "course_code", lambda: {**real(), "course_utils": ("/elsewhere/course_utils", "0" * 16)})
    with pytest.raises(SystemExit, match="course_utils from .* differs from this machine's"):
        _grade(root, monkeypatch, subs, "--out", tmp_path / "out", "--scheduler", cluster.scheduler_address)
    assert not (tmp_path / "out" / "grades.csv").exists()
