"""How long each source notebook takes top to bottom, the figure its text and the README quote.

    python benchmarks/notebook_times.py [--profile default] [--runs 1] [--threads 1] [ASSIGNMENT ...]

Runs each notebook (reference answers included) in a fresh Jupyter kernel with nbclient, one at a
time, and prints per notebook the wall seconds and the kernel's CPU seconds (user + system, its
child processes included), the median over the runs. `--threads` sets OMP_NUM_THREADS and
torch's thread count through the environment (1: what CI and grading use; a laptop's default is
its core count).
"""
import argparse
import os
import statistics
import time

import nbformat
import psutil
from nbclient import NotebookClient

from autograder import course


def run_once(assignment, profile, threads):
    path = course.source_notebook(assignment)
    nb = nbformat.read(str(path), as_version=4)
    os.environ.update(COURSE_PROFILE=profile, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    seen = {}

    def kernel_cpu(**_):  # after every cell, while the kernel lives
        times = psutil.Process(client.km.provisioner.pid).cpu_times()
        seen["cpu"] = times.user + times.system + times.children_user + times.children_system

    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                            on_cell_executed=kernel_cpu)
    tic = time.perf_counter()
    client.execute()
    cpu = seen["cpu"]
    return time.perf_counter() - tic, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignments", nargs="*")
    parser.add_argument("--profile", default="default", choices=["fast", "default", "full"])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"profile {args.profile}, {args.threads} thread(s), {args.runs} run(s) each, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    for assignment in course.pick(args.assignments):
        runs = [run_once(assignment, args.profile, args.threads) for _ in range(args.runs)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"{assignment:<22} wall {wall:6.1f} s   kernel CPU {cpu:6.1f} s", flush=True)


if __name__ == "__main__":
    main()
