"""Grading throughput: plain `nbgrader autograde` (sequential, the whole class in one call) against
`autograder grade --workers N`, on the same generated submissions.

    python benchmarks/grading_throughput.py [--assignment 01_backprop] [--students 20] [--runs 3] [--workers 2] [--no-nbgrader]
    python benchmarks/grading_throughput.py --class-size 500 [--assignments 01_backprop 04_rnn 09_rl] [--runs 1]

The submissions are made from the source notebook: the reference answers, the bare release and
every mutant, cycled to the number of students. Both graders run in the fast profile. Prints
each run, the medians, submissions per minute and their ratio, and the autograder's overhead per
submission beyond the cells' own run time: the median over submissions, and the whole command's
time (CLI start, the fork server importing the course's libraries, gradebook, reports: imports
counted as overhead) shared out over the submissions, workers x wall time minus the cells' run
time, per submission, split into what is paid once per command and what each submission pays.

With --class-size N: a class of N submissions spread over several assignments (each student hands
in every one; the autograder only), with the whole report (similarity included): submissions per
minute and the worker-seconds paid once per command.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder import course
from autograder.cli import _mutant_files, _samples

BIN = Path(sys.executable).parent


def make_submissions(assignment, students, folder):
    samples = list(_samples(assignment, _mutant_files(assignment), forged=False).values())
    name = course.source_notebook(assignment).name
    for i in range(students):
        path = folder / f"student{i:03d}" / assignment / name
        path.parent.mkdir(parents=True)
        nbformat.write(samples[i % len(samples)], str(path))


def plain_nbgrader(assignment, submissions, work):
    """A course folder for stock nbgrader: source/, submitted/, its gradebook; one autograde call."""
    root = work / "nbgrader-course"
    shutil.copytree(course.source_dir() / assignment, root / "source" / assignment)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.root = %r\nc.Execute.timeout = 120\n" % str(root))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COURSE_PROFILE": "fast",
           "COURSE_DEVICE": "cpu"}
    subprocess.run([str(BIN / "nbgrader"), "generate_assignment", assignment, "--force"], cwd=root, env=env,
                   check=True, capture_output=True)
    shutil.copytree(submissions, root / "submitted")
    tic = time.perf_counter()
    run = subprocess.run([str(BIN / "nbgrader"), "autograde", assignment, "--force"], cwd=root, env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if run.returncode != 0:
        print(run.stderr[-2000:], file=sys.stderr)
    return seconds


def autograder(submissions, work, workers):
    out = work / "autograder-out"
    tic = time.perf_counter()
    subprocess.run([str(BIN / "autograder"), "grade", str(submissions), "--out", str(out), "--workers", str(workers)],
                   check=True, capture_output=True, cwd=course.course_root(),
                   env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    seconds = time.perf_counter() - tic
    results = [json.loads(p.read_text()) for p in out.glob("results/*/*.json")]
    overhead = [r["wall_seconds"] - r["exec_seconds"] for r in results if "wall_seconds" in r]
    amortised = (workers * seconds - sum(r["exec_seconds"] for r in results)) / len(results)
    return seconds, overhead, amortised


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="01_backprop")
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-nbgrader", action="store_true", help="time the autograder only (no ratio)")
    parser.add_argument("--class-size", type=int, help="a class of this many submissions over --assignments")
    parser.add_argument("--assignments", nargs="+", default=["01_backprop", "04_rnn", "09_rl"])
    args = parser.parse_args()
    if args.class_size:
        return class_size(args)
    times = {"nbgrader autograde": [], f"autograder --workers {args.workers}": []}
    overheads, amortised = [], []
    print(f"{args.students} submissions of {args.assignment}, {args.runs} runs each, {os.cpu_count()} cores")
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
            work = Path(tmp)
            make_submissions(args.assignment, args.students, work / "submitted")
            plain = None if args.no_nbgrader else plain_nbgrader(args.assignment, work / "submitted", work)
            ours, overhead, shared = autograder(work / "submitted", work, args.workers)
        if plain is None:
            times.pop("nbgrader autograde", None)
        else:
            times["nbgrader autograde"].append(plain)
        times[f"autograder --workers {args.workers}"].append(ours)
        overheads += overhead
        amortised.append(shared)
        print(f"  run {run + 1}: " + (f"nbgrader {plain:.1f} s, " if plain is not None else "") + f"autograder {ours:.1f} s")
    rates = {}
    for name, values in times.items():
        median = statistics.median(values)
        rates[name] = args.students / median * 60
        print(f"{name:<24} median {median:6.1f} s  {rates[name]:6.1f} submissions/min")
    if len(rates) == 2:
        plain_rate, our_rate = rates.values()
        print(f"ratio: {our_rate / plain_rate:.2f}x (target >= 10x on 2 cores)")
    typical = statistics.median(overheads)
    shared = statistics.median(amortised)
    fixed = (shared - typical) * args.students  # worker-seconds paid once per command
    print(f"autograder overhead per submission beyond its cells' run time: median {typical:.2f} s "
          f"(max {max(overheads):.2f} s: the first submissions wait for the fork server's imports)")
    print(f"the whole command's overhead shared out, imports included: median {shared:.2f} s per submission; "
          f"of it {fixed:.0f} worker-seconds are paid once per command (CLI, the fork server importing the "
          f"course's libraries, gradebook, reports), so a class of 500 would pay {typical + fixed / 500:.2f} s each")


def class_size(args):
    students = -(-args.class_size // len(args.assignments))
    total = students * len(args.assignments)
    print(f"a class of {total} submissions ({students} students x {', '.join(args.assignments)}), "
          f"{args.workers} workers, {args.runs} run(s), {os.cpu_count()} cores")
    walls, shared, typical = [], [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="class-") as tmp:
            work = Path(tmp)
            for assignment in args.assignments:
                make_submissions(assignment, students, work / "submitted")
            seconds, overhead, amortised = autograder(work / "submitted", work, args.workers)
        walls.append(seconds)
        shared.append(amortised)
        typical.append(statistics.median(overhead))
        print(f"  run {run + 1}: {seconds:.1f} s, {total / seconds * 60:.1f} submissions/min")
    wall, per, own = statistics.median(walls), statistics.median(shared), statistics.median(typical)
    print(f"median {wall:.1f} s: {total / wall * 60:.1f} submissions/min; overhead beyond the cells' run time: "
          f"{own:.2f} s per submission (median), {(per - own) * total:.0f} worker-seconds once per command")


if __name__ == "__main__":
    main()
