"""Start autograder/runner.py for one submission, as isolated as this machine allows, without paying
Python's and torch's imports for every submission.

A grading process has one fork server (per environment and set of modules): a process that imports
the runner and everything tests rely on (torch, numpy, course_utils, matplotlib) once, runs no
student code, and forks one runner per submission for every worker slot (torch starts no thread pool
before the fork: nothing in it computes). The forked child, still root:

- as root with util-linux-style namespaces available (the grading machines here and in CI):
  enters private mount, PID and network namespaces, forks the runner as the PID namespace's first
  process, mounts tmpfs over the course folder (solutions, hidden tests, mutants), the submissions
  and output folders (other students, the gradebook), /root, /home, /tmp, /var/tmp and /dev/shm with
  only the Python installation, the virtual environment and course_utils mounted back, a fresh
  /proc, then becomes an unprivileged user of its own per worker slot under rlimits on memory,
  processes, file size and CPU time. No network at all: the new namespace has only a loopback that
  is down. When the runner is killed, the PID namespace takes every process it started with it.
- without root (a laptop running `autograder check`), or with AUTOGRADER_ISOLATION=rlimits: a new
  session with the rlimits only; `isolation()` says so, and `grade` warns.

Either way the runner closes every file descriptor but its two pipes before any student code runs.
"""
import atexit
import ctypes
import fcntl
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

SLOTS = 256  # sandbox slots per host: Unix uids uid_base() ... uid_base() + 255, none with an account
MS_BIND, MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV, MS_NOEXEC = 4096, 16384, 1 << 18, 2, 4, 8
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
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
        elif sys.platform != "linux":
            _probe = "rlimits only (namespaces need Linux)"
        else:
            probe = subprocess.run([sys.executable, "-S", "-c", _PROBE], capture_output=True, text=True)
            _probe = "namespaces" if probe.returncode == 0 else \
                f"rlimits only (unshare failed: {probe.stderr.strip()[-120:]})"
    return _probe


_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x00020000 | 0x20000000 | 0x40000000) != 0:
    raise SystemExit(os.strerror(ctypes.get_errno()))
pid = os.fork()
if pid == 0:
    os._exit(0 if libc.mount(b"proc", b"/proc", b"proc", 0, None) == 0 or os.getpid() == 1 else 1)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""


def uid_base():
    """The first sandbox uid: AUTOGRADER_UID_BASE, where 61000 ... 61255 are real accounts here."""
    return int(os.environ.get("AUTOGRADER_UID_BASE", "61000"))


def claim_slot():
    """(number, lock) of a sandbox slot (its own Unix uid) that no other grading
    thread or process on this host holds: one lock file per slot, held until `lock` is closed or the
    process ends. Two batches graded at once on one host never share a uid."""
    folder = Path(tempfile.gettempdir()) / f"autograder-slots-{uid_base()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    for number in range(SLOTS):
        lock = open(folder / f"slot-{number}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return number, lock
    raise RuntimeError(f"all {SLOTS} sandbox slots on this host are taken")


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


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(source, target, fstype, flags, data):
    if _libc().mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                     flags, data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} -> {target}: {os.strerror(errno)}")


def _hide(spec):
    """Inside the new mount namespace, still root: hide, mount back, fresh /proc."""
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
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)  # this PID namespace's


def _become_runner(spec, requests, replies, runner):
    """In the runner's own process: drop privileges, keep only the two pipes, serve."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    home = spec["env"]["HOME"]
    if spec["namespaces"]:
        _hide(spec)
        uid = spec["uid"]
        os.makedirs(home, exist_ok=True)
        os.chmod("/tmp", 0o1777)
        os.chown(home, uid, uid)
        os.chmod(home, 0o700)
    os.chdir(home)
    os.environ.clear()
    os.environ.update(spec["env"])
    _limits(spec["memory_mb"], spec["cpu_seconds"], spec["nproc"] if spec["namespaces"] else 0)
    if spec["namespaces"]:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
    os.dup2(requests, 0)
    os.dup2(replies, 3)
    os.closerange(4, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
    runner.serve(0, 3)
    os._exit(0)


def _child(spec, fds, runner):
    """The forked child of the fork server: set up isolation, start the runner, report its pid."""
    requests, replies = fds
    os.setsid()
    if spec.get("judge"):  # trusted: no sandbox, no student code
        from autograder import judge
        os.write(replies, f"pid {os.getpid()}\n".encode())
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(spec["env"])
        judge.serve(requests, replies)
        os._exit(0)
    if not spec["namespaces"]:
        os.write(replies, f"pid {os.getpid()}\n".encode())
        _become_runner(spec, requests, replies, runner)
    if _libc().unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET) != 0:
        os._exit(111)
    pid = os.fork()  # the PID namespace's first process: the runner
    if pid == 0:
        try:
            _become_runner(spec, requests, replies, runner)
        finally:
            os._exit(112)
    os.write(replies, f"pid {pid}\n".encode())
    os.close(requests)
    os.close(replies)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.waitpid(pid, 0)
    os._exit(0)


def serve_forks(control_fd, modules=()):
    """The fork server: preload once, then fork a runner for each request on the control socket."""
    from autograder import judge, runner  # noqa: F401 (judges are forked from here too)

    runner.preload(modules)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 2)
        except OSError:
            return
        if not message:
            return
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                control.close()
                _child(json.loads(message), fds, runner)
            finally:
                os._exit(113)
        for fd in fds:
            os.close(fd)


class ForkServer:
    """One fork server process per environment and module set, shared by every worker slot (each
    request names its slot's uid), started on first use."""

    _servers = {}
    _lock = threading.Lock()

    def __init__(self, env, modules):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = parent
        self.config = tempfile.mkdtemp(prefix="fork-server-")  # matplotlib's cache, for the imports
        env = {**env, "HOME": self.config, "MPLCONFIGDIR": self.config}
        # -P: the autograder folder is not put on sys.path (its modules would shadow others)
        self.proc = subprocess.Popen([sys.executable, "-P", str(Path(__file__)), "fork-server", str(child.fileno()),
                                      ",".join(modules)],
                                     pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open("/tmp/fs.log", "a"), start_new_session=True)
        child.close()

    @classmethod
    def serving(cls, env, modules):
        key = (json.dumps(env, sort_keys=True), tuple(modules))
        with cls._lock:
            server = cls._servers.get(key)
            if server is None or server.proc.poll() is not None:
                server = cls._servers[key] = cls(env, modules)
        return server

    def fork(self, spec, requests, replies):  # one datagram: threads may send at once
        socket.send_fds(self.control, [json.dumps(spec).encode()], [requests, replies])

    @classmethod
    def close_all(cls):
        with cls._lock:
            for server in cls._servers.values():
                server.control.close()
                try:
                    server.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                shutil.rmtree(server.config, ignore_errors=True)
            cls._servers.clear()


atexit.register(ForkServer.close_all)


class Runner:
    """A runner process: `send` bytes to it, read its replies on `fd`, `kill` it."""

    def __init__(self, pid, requests, fd):
        self.pid, self.requests, self.fd = pid, requests, fd

    def send(self, data):
        _write_all(self.requests, data)

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self):
        for fd in (self.requests, self.fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def start(*, slot, env, hide, expose, memory_mb=4096, cpu_seconds=1200, nproc=256, modules=()):
    """A Runner for one submission as the slot's user, forked from the fork server that imported
    `modules`. The runner's first line on runner.fd is its pid; its replies follow."""
    spec = {"uid": uid_base() + slot, "hide": [str(p) for p in hide] + HIDE_ALWAYS, "expose": [str(p) for p in expose],
            "memory_mb": memory_mb, "cpu_seconds": cpu_seconds, "nproc": nproc, "env": env,
            "namespaces": isolation() == "namespaces"}
    return _fork(spec, env, modules)


def start_judge(*, env, modules=()):
    """A judge for one submission (autograder.judge: trusted, not sandboxed), forked from the same
    fork server. Its first line on .fd is its pid; its messages follow."""
    return _fork({"judge": True, "env": env}, env, modules)


def _fork(spec, env, modules):
    req_read, req_write = os.pipe()
    rep_read, rep_write = os.pipe()
    server_env = {k: v for k, v in env.items() if k not in ("HOME", "MPLCONFIGDIR")}
    server = ForkServer.serving(server_env, modules)
    try:
        server.fork(spec, req_read, rep_write)
    except OSError:  # the fork server died: start a new one
        ForkServer._servers.pop(next((k for k, v in ForkServer._servers.items() if v is server), None), None)
        server = ForkServer.serving(server_env, modules)
        server.fork(spec, req_read, rep_write)
    finally:
        os.close(req_read)
        os.close(rep_write)
    return Runner(None, req_write, rep_read)


if __name__ == "__main__":
    if sys.argv[1:2] == ["fork-server"]:
        serve_forks(int(sys.argv[2]), [m for m in sys.argv[3].split(",") if m])
