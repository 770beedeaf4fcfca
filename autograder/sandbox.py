"""Start autograder/runner.py for one submission, as isolated as this machine allows.

As root with util-linux `unshare` (the grading machines here and in CI): private mount, PID and
network namespaces; tmpfs over the course folder (solutions, hidden tests, mutants), the
submissions and output folders (other students, the gradebook), /root, /home, /tmp, /var/tmp and
/dev/shm, with only the Python installation, the virtual environment and course_utils mounted back;
then an unprivileged user of its own per worker slot, and rlimits on memory, processes, file size
and CPU time. No network at all: the new namespace has only a loopback that is down. When the run
ends or is killed, the PID namespace takes every process the submission started with it.

Without root (a laptop running `autograder check`), or with AUTOGRADER_ISOLATION=rlimits, the
runner starts as a plain child with the rlimits only; `isolation()` says so, and `grade` warns.
"""
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).with_name("runner.py")
BASE_UID = 61000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
HIDE_ALWAYS = ["/root", "/home", "/tmp", "/var/tmp", "/dev/shm"]
_probe = None


def isolation():
    """'namespaces' when the full sandbox works here, else 'rlimits only' (and why)."""
    global _probe
    if _probe is None:
        if os.environ.get("AUTOGRADER_ISOLATION") == "rlimits":
            _probe = "rlimits only (AUTOGRADER_ISOLATION=rlimits)"
        elif os.geteuid() != 0:
            _probe = "rlimits only (not root: student code can read what this user reads and use the network)"
        elif not shutil.which("unshare"):
            _probe = "rlimits only (util-linux `unshare` not found)"
        else:
            probe = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--net", "--mount-proc", "true"],
                                   capture_output=True, text=True)
            _probe = "namespaces" if probe.returncode == 0 else \
                f"rlimits only (unshare failed: {probe.stderr.strip()[:120]})"
    return _probe


def _limits(memory_mb, cpu_seconds, nproc):
    limits = [(resource.RLIMIT_AS, memory_mb * 2**20), (resource.RLIMIT_FSIZE, 256 * 2**20),
              (resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, cpu_seconds)]
    if nproc:
        limits.append((resource.RLIMIT_NPROC, nproc))
    for kind, value in limits:
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):  # e.g. macOS refuses RLIMIT_AS: keep the others
            pass


def start(*, slot, env, hide, expose, memory_mb=4096, cpu_seconds=1200, nproc=256):
    """Popen of the runner; its replies come on the returned read end of a pipe."""
    read, write = os.pipe()
    os.set_inheritable(write, True)
    env = {**env, "GRADER_FD": str(write)}
    if isolation() == "namespaces":
        spec = {"uid": BASE_UID + slot, "hide": [str(p) for p in hide] + HIDE_ALWAYS,
                "expose": [str(p) for p in expose], "memory_mb": memory_mb, "cpu_seconds": cpu_seconds,
                "nproc": nproc, "env": env, "python": sys.executable}
        argv = ["unshare", "--mount", "--pid", "--fork", "--net", "--mount-proc",
                sys.executable, "-S", str(Path(__file__)), json.dumps(spec)]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                pass_fds=(write,), start_new_session=True, env={"PATH": os.environ.get("PATH", "")})
    else:
        workdir = env["HOME"]
        os.makedirs(workdir, exist_ok=True)
        shutil.copy(RUNNER, Path(workdir) / "runner.py")
        proc = subprocess.Popen([sys.executable, str(Path(workdir) / "runner.py")], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write,),
                                cwd=workdir, env=env, start_new_session=True,
                                preexec_fn=lambda: _limits(memory_mb, cpu_seconds, 0))
    os.close(write)
    return proc, read


def _mount(source, target, fstype, flags, data):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                  flags, data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} -> {target}: {os.strerror(errno)}")


def _init(spec):
    """Inside the new namespaces, still root: hide, mount back, drop to the slot's user, exec."""
    runner_source = RUNNER.read_text()
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    keep = {}
    for path in spec["expose"] + [sys.base_prefix]:
        path = os.path.realpath(path)
        if os.path.exists(path):
            keep[path] = os.open(path, os.O_PATH)  # a handle that survives the tmpfs mounted over it
    hidden = []
    for path in sorted({os.path.realpath(p) for p in spec["hide"] if os.path.isdir(p)}, key=len):
        if any(path == h or path.startswith(h + "/") for h in hidden):
            continue  # already under a hidden folder
        _mount("tmpfs", path, "tmpfs", 0, "mode=755,size=512m")
        hidden.append(path)
    for path, fd in sorted(keep.items()):
        if any(path == h or path.startswith(h + "/") for h in hidden):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
        os.close(fd)
    uid = spec["uid"]
    home = spec["env"]["HOME"]
    os.makedirs(home, exist_ok=True)
    os.chmod("/tmp", 0o1777)
    os.chown(home, uid, uid)
    os.chmod(home, 0o700)
    runner = os.path.join(home, "runner.py")
    with open(runner, "w") as handle:
        handle.write(runner_source)
    os.chdir(home)
    _limits(spec["memory_mb"], spec["cpu_seconds"], spec["nproc"])
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    python = spec["python"]
    os.execve(python, [python, runner], spec["env"])


if __name__ == "__main__":
    _init(json.loads(sys.argv[1]))
