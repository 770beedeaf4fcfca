"""Start the processes of one submission's grading without paying Python's and torch's imports for
each: its runner (autograder/runner.py, student code, sandboxed) and its judge (autograder/judge.py,
trusted, never runs student code).

A grading process has one fork server (per environment and set of modules): a process that imports
the runner, the judge and everything tests rely on (torch, numpy, course_utils, matplotlib) once,
runs no student code, and forks a runner and a judge per submission for every worker slot (torch
starts no thread pool before the fork: nothing in it computes). The judge is forked as it is. The
runner's forked child, still root:

- as root with Linux namespaces available (the grading machines here and in CI): enters new mount,
  PID, network, IPC and UTS namespaces, forks the runner as the PID namespace's first process, and
  builds it a root file system from an allow-list (`_allowed`): /usr and the library folders, the
  Python installation and the virtual environment (at the paths Python was started by and at their
  resolved paths) and course_utils, all read-only; a private /tmp and /dev/shm, a /dev with null,
  zero, full, random and urandom, and a fresh /proc. It pivots into it and drops the host's root,
  so nothing else of the host exists there: no course folder, no other submission, no gradebook, no
  home folders, no world-writable host folder (/run/lock, /var/tmp). Then it becomes an
  unprivileged user of its own per worker slot under rlimits on memory, processes, file size and CPU
  time. No network (a loopback that is down), no System V IPC shared with the host or with other
  submissions. When the runner is killed, the PID namespace takes every process it started with it.
  This is done in-process, not with bubblewrap: bwrap starts a new program, which would import
  Python and torch again for every submission (the fork server exists to avoid that).
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
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)
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
            probe = subprocess.run([sys.executable, "-P", "-c", "from autograder import sandbox; sandbox.probe()"],
                                   capture_output=True, text=True)
            _probe = "namespaces" if probe.returncode == 0 else \
                f"rlimits only (unshare failed: {probe.stderr.strip()[-120:]})"
    return _probe


def probe():
    """Exit 0 when the sandbox can be built here: namespaces, the allow-listed root, /proc."""
    if _libc().unshare(NAMESPACES) != 0:
        raise SystemExit(os.strerror(ctypes.get_errno()))
    pid = os.fork()
    if pid == 0:
        try:
            _enter({"expose": []})
            os._exit(0)
        except BaseException as exc:
            print(exc, file=sys.stderr)
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    raise SystemExit(os.waitstatus_to_exitcode(status))


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


def _allowed(spec):
    """(source, targets) of what the runner sees of the host, read-only: the system's libraries and
    programs, the Python installation and the virtual environment at the paths Python was started
    by and at their resolved paths (a symlinked environment works), course_utils, and a few files of
    /etc. Nothing else of the host is there."""
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/localtime",
             sys.prefix, sys.base_prefix, *spec["expose"]]
    allowed = {}
    for path in paths:
        if os.path.lexists(path):
            real = os.path.realpath(path)
            if os.path.exists(real):
                allowed.setdefault(real, set()).update({real, os.path.abspath(path)})
    return allowed


def _enter(spec):
    """Inside the new mount namespace, still root: a new root file system that holds only what
    `_allowed` lists (read-only), a private /tmp, a minimal /dev, and this PID namespace's /proc."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    # handles (and kinds) taken now: they survive the tmpfs mounted over /tmp below
    handles = {source: (os.open(source, os.O_PATH), targets, os.path.isdir(source))
               for source, targets in _allowed(spec).items()}
    root = "/tmp"  # a fresh tmpfs mounted here (in this namespace only) becomes the root
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=16m")
    for folder, options in [("/tmp", "mode=1777,size=512m"), ("/dev", "mode=755,size=1m"),
                            ("/dev/shm", "mode=1777,size=64m")]:
        os.makedirs(root + folder, exist_ok=True)
        _mount("tmpfs", root + folder, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for device in ("null", "zero", "full", "random", "urandom"):
        open(f"{root}/dev/{device}", "w").close()
        _mount(f"/dev/{device}", f"{root}/dev/{device}", None, MS_BIND, None)
    for name, target in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")]:
        os.symlink(target, f"{root}/dev/{name}")
    binds = sorted((target, fd, is_dir) for source, (fd, targets, is_dir) in handles.items() for target in targets
                   if not (target == source and any(source.startswith(other + "/") for other in handles)))
    for target, fd, is_dir in binds:
        if os.path.lexists(root + target) and not os.path.isdir(root + target) and is_dir:
            continue
        os.makedirs(root + target if is_dir else os.path.dirname(root + target), exist_ok=True)
        if not is_dir:
            open(root + target, "a").close()
        _mount(f"/proc/self/fd/{fd}", root + target, None, MS_BIND | MS_REC, None)
        _mount("none", root + target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    for fd, _, _ in handles.values():
        os.close(fd)
    os.makedirs(f"{root}/proc", exist_ok=True)
    os.chdir(root)
    if _libc().syscall(SYS_PIVOT_ROOT, b".", b".") != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"pivot_root: {os.strerror(errno)}")
    if _libc().umount2(b".", MNT_DETACH) != 0:  # the host's root, stacked under the new one: gone
        errno = ctypes.get_errno()
        raise OSError(errno, f"umount: {os.strerror(errno)}")
    os.chdir("/")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)  # this PID namespace's
    _mount("none", "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def _become_runner(spec, requests, replies, runner):
    """In the runner's own process: drop privileges, keep only the two pipes, serve."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    home = spec["env"]["HOME"]
    if spec["namespaces"]:
        _enter(spec)
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


def _startup_error(fd, exc):
    import msgpack
    from autograder import codec
    try:
        codec.send(fd, msgpack.packb({"startup_error": f"{type(exc).__name__}: {exc}"[:500]}))
    except OSError:
        pass


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
    if _libc().unshare(NAMESPACES) != 0:
        os._exit(111)
    pid = os.fork()  # the PID namespace's first process: the runner
    if pid == 0:
        try:
            _become_runner(spec, requests, replies, runner)
        except BaseException as exc:  # the grader's fault: say why, where the grader reads
            _startup_error(replies, exc)
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
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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


def start(*, slot, env, expose, memory_mb=4096, cpu_seconds=1200, nproc=256, modules=()):
    """A Runner for one submission as the slot's user, forked from the fork server that imported
    `modules`. The runner's first line on runner.fd is its pid; its replies follow."""
    spec = {"uid": uid_base() + slot, "expose": [str(p) for p in expose],
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
