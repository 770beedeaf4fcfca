"""Run a notebook cell by cell in a Jupyter kernel, surviving hung cells and dead kernels.

A cell that runs past its timeout or kills the kernel is recorded; the kernel is replaced by a
fresh one, the code cells that had already run are replayed, and execution goes on with the next
cell, so the tests that do not depend on the failing cell are still graded.
"""
import os
import time

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output

from . import notebooks


class Run:
    """What happened while executing: events name the cells that timed out or crashed."""

    def __init__(self):
        self.events = []  # (kind, cell index, grade_id or None)

    def kinds(self):
        return {kind for kind, *_ in self.events}


def _error(cell, ename, evalue):
    cell.outputs.append(new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))


def run_notebook(nb, *, cwd, env=None, cell_timeout=60, deadline=None, only=None, startup_timeout=60):
    """Execute `nb` in place. `only(cell)` may skip cells; `deadline` is a time.monotonic() bound
    for the whole run, after which the remaining cells are marked as not run."""
    run = Run()
    kernel_env = {**os.environ, **(env or {})}
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=False, startup_timeout=startup_timeout,
                            shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}})
    ran = []  # indices of code cells that completed, replayed after a kernel restart

    def start():
        client.km = client.create_kernel_manager()
        client.start_new_kernel(env=kernel_env, cwd=str(cwd))
        client.start_new_kernel_client()

    def stop():
        try:
            client._cleanup_kernel()
        except Exception:
            pass

    def restart():
        stop()
        start()
        for index in ran:
            replay = nb.cells[index].copy()
            replay.outputs = []
            try:
                client.execute_cell(replay, index)
            except (CellTimeoutError, DeadKernelError):
                break

    start()
    try:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or (only is not None and not only(cell)):
                continue
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 1:
                    run.events.append(("timeout", index, notebooks.grade_id(cell)))
                    _error(cell, "GradingTimeout", "not run: the submission's time limit was reached")
                    continue
                client.timeout = max(1, min(cell_timeout, int(left)))
            try:
                client.execute_cell(cell, index)
                ran.append(index)
            except CellTimeoutError:
                run.events.append(("timeout", index, notebooks.grade_id(cell)))
                _error(cell, "CellTimeout", f"the cell ran longer than {client.timeout} s and was stopped")
                restart()
            except DeadKernelError:
                run.events.append(("crashed", index, notebooks.grade_id(cell)))
                _error(cell, "KernelDied", "the kernel died while running this cell (crash, os._exit or out of memory)")
                restart()
    finally:
        stop()
    return run
