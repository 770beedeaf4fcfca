"""The process that runs a submission's code: plain Python, one cell at a time, no IPython.

It is started by autograder.sandbox and imports nothing from the autograder package. The grader
sends requests on fd 0 as length-prefixed marshal frames: first a secret nonce, then one
{"index", "body", "last", "name", "test", "locked"} per cell (the grader has already turned IPython
syntax into plain calls and split off the cell's last expression). One line per cell comes back on
fd $GRADER_FD: the nonce, a space, and the repr of a dict of plain str/int/float/None/list values.

Student code runs in this process, so everything that decides or reports a result is kept out of
its reach (README, threat model):

- The trusted state (the nonce, the pipes, the snapshots, the audit hook's switches) lives only in
  the locals of `serve` and in closures; this module defines no classes (no `__subclasses__` path),
  hands no function of its own to student code (the stand-ins it exposes are built in a separate,
  empty namespace), is not `sys.modules['__main__']` (that is the student's namespace) and looks up
  no builtin or library function after student code has run: everything it calls was bound before.
- An audit hook, armed before the first cell and never disarmed, refuses to everyone (libraries
  included) what could reach that state: frames (`sys._getframe`, `sys._current_frames`,
  `tb_frame`, `gi_frame`, `cr_frame`, `ag_frame`), trace and profile hooks, new audit hooks, heap
  walks (`gc.get_objects/get_referrers/get_referents`), ctypes, `/proc/<pid>/mem` and the other
  per-process files of /proc, symlinks; Python signal handlers (they receive the current frame) and
  the re-creation of the modules patched here are refused at their source. Processes, threads and
  the network are refused too, and while a test runs, assigning attributes of guarded functions and
  classes.
- Replies carry the nonce, so a line that student code writes on the pipe is recognised as forged.
"""
import builtins

_builtins = builtins
__builtins__ = dict(vars(builtins))  # this module's functions look builtins up here, not in `builtins`

import _imp  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import marshal  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import _signal  # noqa: E402
import _thread  # noqa: E402

GUARDED = ["builtins", "math", "operator", "functools", "numpy", "numpy.testing", "numpy.linalg", "torch",
           "torch.testing", "torch.nn.functional", "torch.linalg", "course_utils.testing", "course_utils.gradcheck"]
GUARDED_CLASSES = [("torch", "Tensor")]  # Python classes whose methods tests rely on
# Imported once before the clock starts and before the audit hook, besides the modules the course's
# notebooks import (the grader names those): libraries that look at frames while they are imported
# (typing_extensions, traitlets through ipywidgets, sympy through torch's symbolic shapes, which
# torch imports lazily on first use of some functions).
# torch._dynamo is imported by the first optimizer a cell builds, and rebinds torch.manual_seed.
PRELOAD = ["course_utils", "typing_extensions", "enum", "traceback", "collections", "ipywidgets",
           "torch.fx.experimental.symbolic_shapes", "torch._dynamo"]
OUTPUT_LIMIT = 20_000  # characters of stdout+stderr kept per cell

# Bound now, before any student code: later lookups would find what student code put there.
_read, _write, _perf, _cpu = os.read, os.write, time.perf_counter, time.process_time
_loads, _exc_info, _thread_count = marshal.loads, sys.exc_info, _thread._count
_exact_str, _type, _id, _vars, _set = str.__str__, type, id, vars, set
_realpath, _fspath = os.path.realpath, os.fspath
# /proc/<pid>/mem and friends (the process's memory and open files), the /proc folders a dir_fd
# could start from, and relative paths through such names
_bad_path = re.compile(r"/proc/(?:\d+|self|thread-self)/(?:mem|fd|fdinfo|map_files|pagemap|task|environ|root|cwd|exe)"
                       r"(?:/.*)?|/proc(?:/(?:\d+|self|thread-self))?/?|/dev/(?:fd|mem|kmem|port)(?:/.*)?|[^/].*").fullmatch
_bad_relative = re.compile(r"(?:.*/)?(?:proc|self|thread-self|mem|fd|fdinfo|map_files|pagemap|task|environ)(?:/.*)?").fullmatch
_FunctionType, _ModuleType, _getframe = types.FunctionType, types.ModuleType, sys._getframe
_PATH_TYPES = (str, bytes)
import pathlib  # noqa: E402
_PATHLIB = (pathlib.PosixPath, pathlib.PurePosixPath)

FRAMES = {"sys._getframe", "sys._getframemodulename", "sys._current_frames", "sys._current_exceptions"}
FRAME_ATTRIBUTES = {"tb_frame", "gi_frame", "cr_frame", "ag_frame"}
# refused like a time limit (status timeout), not as tampering
LIMITS = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
          "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "socket.connect", "socket.bind",
          "socket.sendto", "socket.sendmsg")
ALWAYS = ("sys.settrace", "sys.setprofile", "sys.addaudithook", "sys.monitoring", "gc.get_objects",
          "gc.get_referrers", "gc.get_referents", "ctypes.", "cpython.", "os.symlink", "os.link") + LIMITS

# The stand-ins student code can see, built in a namespace of their own that holds nothing
# trusted (its builtins are a private copy too): reaching their globals leads nowhere. The
# refusers keep no reference to what they replace, so there is nothing to recover from them.
_EXPOSED = '''
class CappedStream(io.TextIOBase):
    def __init__(self):
        self.parts, self.size, self.dropped = [], 0, 0
    def writable(self):
        return True
    def write(self, text):
        text = str(text)
        room = LIMIT - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)
    def take(self):
        text = "".join(self.parts)
        if self.dropped:
            text += f"\\n[... {self.dropped} more characters of output dropped]"
        self.parts, self.size, self.dropped = [], 0, 0
        return text

class Shell:
    """Stands in for get_ipython(): magics and shell escapes do nothing while grading."""
    def __getattr__(self, name):
        return lambda *args, **kwargs: None

def refuser(what, kind):
    def refused(*args, **kwargs):
        audit("autograder.refused", what, kind)
        raise RuntimeError(f"{what} is not allowed while grading")
    return refused
'''


def _text(value, limit=2000):
    """An exact str (a str subclass could carry its own __repr__ into the reply)."""
    try:
        return _exact_str(value)[:limit]
    except BaseException:
        return "<not a string>"


def _error_text(exc):
    try:
        return _text(str(exc))
    except BaseException:
        return "<unprintable exception>"


def _frame_users():
    """Library code allowed to look at frames: it reads a module name or a location from them and
    never hands a frame to its caller. (typing and enum name the module a class is created in,
    namedtuple too; torch records where a lazy CUDA call came from with traceback.format_stack;
    traceback.format_exc turns a traceback into text.) Identified by code object, bound before any
    student code runs, so that code compiled elsewhere under the same name does not qualify."""
    import collections
    import enum
    import traceback
    import typing
    getframe = [typing._caller, collections.namedtuple, traceback.format_stack, traceback.extract_stack,
                traceback.print_stack, enum.EnumType._create_]
    try:
        import typing_extensions
        getframe += [getattr(typing_extensions, n) for n in ("_caller", "_has_generic_or_protocol_as_origin")
                     if hasattr(typing_extensions, n)]
    except ImportError:
        pass
    walkers = [traceback.walk_tb, traceback._walk_tb_with_full_positions, traceback.walk_stack]
    consumer = traceback.StackSummary._extract_from_extended_frame_gen
    return ({_id(f.__code__) for f in getframe if _type(f) is _FunctionType},
            {_id(f.__code__) for f in walkers}, _id(consumer.__code__))


def _make_hook(state):
    """The audit hook. `state` is reachable only from here and from serve's locals. Each refusal is
    recorded as (what, kind): "limit" (processes, threads, network, signal handlers: like a time
    limit) or "reach" (a route towards the grader's state), with `by_student` when the code that
    asked was compiled from a cell."""
    def caller_is_student(depth):
        """True when student code asked: in a student's cell, always; in a test or read-only cell,
        when a function compiled from another cell (the student's) is on the stack."""
        if state["level"] == "student":
            return True
        state["busy"] = True
        try:
            frame = _getframe(depth)
            while frame is not None:
                name = frame.f_code.co_filename
                if name == state["cell"]:
                    return False
                if name.startswith("<cell-"):
                    return True
                frame = frame.f_back
            return False
        except BaseException:
            return False
        finally:
            state["busy"] = False

    getframe_users, walkers, consumer = _frame_users()

    def library_use(event):
        """True when the code asking for a frame is one of the library functions above (for a
        traceback's frames: a walker consumed by StackSummary without capture_locals)."""
        state["busy"] = True
        try:
            frame = _getframe(2)
            code = _id(frame.f_code)
            state["asker"] = f"{frame.f_code.co_filename.rsplit('site-packages/', 1)[-1]}:{frame.f_code.co_name}"
            if event == "sys._getframe":
                return code in getframe_users
            if code not in walkers:
                return False
            for _ in range(3):
                frame = frame.f_back
                if frame is None:
                    return False
                if _id(frame.f_code) == consumer:
                    return frame.f_locals.get("capture_locals") is False
            return False
        except BaseException:
            return False
        finally:
            state["busy"] = False

    def hook(event, args):
        if not state["armed"] or state["busy"]:
            return
        what, kind = None, "reach"
        if event in FRAMES:
            state["asker"] = None
            if event != "sys._getframe" or not library_use(event):
                what = event if not state["asker"] else f"{event} (asked by {state['asker']})"
        elif event == "object.__getattr__":
            if args[1] in FRAME_ATTRIBUTES and not (args[1] == "tb_frame" and library_use(event)):
                what = f"reading {args[1]}"
        elif event == "autograder.refused":  # one of the refusers below
            what, kind = _text(args[0], 200), _text(args[1], 20)
        elif event.startswith(ALWAYS):
            what = event
            if event.startswith(LIMITS):
                kind = "limit"
        elif event == "open":
            path = args[0]
            if _type(path) is not int:
                if _type(path) not in _PATH_TYPES:
                    what = "opening a path-like object (use str or pathlib paths)"
                    if _type(path) in _PATHLIB:
                        what, path = None, _fspath(path)
                if what is None:
                    state["busy"] = True
                    try:
                        real = _realpath(path)
                        real = real.decode("utf-8", "replace") if _type(real) is bytes else real
                        raw = path.decode("utf-8", "replace") if _type(path) is bytes else path
                    finally:
                        state["busy"] = False
                    if _bad_path(real) or (not raw.startswith("/") and _bad_relative(raw)):
                        what = f"opening {real}"
        elif event == "object.__setattr__" and state["level"] == "test" and _id(args[0]) in state["protected"]:
            what = f"assigning {_text(args[1], 100)} of a guarded object"
        if what is None:
            return
        student = caller_is_student(2)
        state["refused"].append((what, kind, student))
        if event in FRAMES:  # the stdlib treats a ValueError here as "no such frame" and carries on
            raise ValueError(f"{what} is not allowed while grading")
        raise RuntimeError(f"{what} is not allowed while grading")
    return hook


def _snapshot_modules(modules, classes):
    for name in GUARDED:
        module = sys.modules.get(name)
        if module is None or name in modules:
            continue
        attrs = dict(_vars(module))
        code = {k: (v.__code__, v.__defaults__, v.__kwdefaults__) for k, v in attrs.items()
                if _type(v) is _FunctionType}
        modules[name] = (module, attrs, code)
    for module_name, class_name in GUARDED_CLASSES:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and (module_name, class_name) not in classes:
            classes[(module_name, class_name)] = (cls, dict(_vars(cls)))


def _snapshot_names(names, namespace, before):
    for key, value in namespace.items():
        if _type(key) is str and not key.startswith("__") and (key not in before or before[key] is not value):
            if _type(value) in (_ModuleType, _FunctionType, _type, types.BuiltinFunctionType) or isinstance(value, _type):
                names[key] = value


def _changed(modules, classes, names, namespace):
    """Guarded names that differ from the snapshot."""
    found = [k for k, v in names.items() if namespace.get(k, None) is not v]
    for name, (module, attrs, code) in modules.items():
        current = _vars(module)
        found += [f"{name}.{k}" for k, v in attrs.items() if current.get(k, None) is not v]
        found += [f"{name}.{k}.__code__" for k, (co, _, _) in code.items() if attrs[k].__code__ is not co]
    for (module_name, class_name), (cls, attrs) in classes.items():
        current = _vars(cls)
        found += [f"{module_name}.{class_name}.{k}" for k, v in attrs.items() if current.get(k, None) is not v]
        found += [f"{module_name}.{class_name}.{k}" for k in current if k not in attrs]
    return [_text(f, 200) for f in found]


def _restore(modules, classes, names, namespace):
    for module, attrs, code in modules.values():
        current = _vars(module)
        for key, value in attrs.items():
            if current.get(key, None) is not value:
                current[key] = value
        for key, (co, defaults, kwdefaults) in code.items():
            fn = attrs[key]
            if fn.__code__ is not co:
                fn.__code__ = co
            if fn.__defaults__ is not defaults:
                fn.__defaults__ = defaults
            if fn.__kwdefaults__ is not kwdefaults:
                fn.__kwdefaults__ = kwdefaults
    for cls, attrs in classes.values():
        current = _vars(cls)
        for key in [k for k in current if k not in attrs]:
            delattr(cls, key)
        for key, value in attrs.items():
            if current.get(key, None) is not value:
                setattr(cls, key, value)
    namespace.update(names)
    namespace["__builtins__"] = _builtins


def preload(modules=()):
    """Import what tests and setup cells rely on (before any student code; a fork server calls
    this once and forks runners from it)."""
    for name in [*GUARDED, *PRELOAD, *modules]:
        try:
            __import__(name)
        except Exception:  # a module that does not import here fails in the cell that imports it, as it would
            pass


def _frames(fd):
    """Length-prefixed marshal frames from the grader, read with functions bound at import."""
    buffer = b""
    while True:
        while len(buffer) < 4:
            chunk = _read(fd, 1 << 16)
            if not chunk:
                return
            buffer += chunk
        size = int.from_bytes(buffer[:4], "big")
        while len(buffer) < 4 + size:
            chunk = _read(fd, 1 << 16)
            if not chunk:
                return
            buffer += chunk
        frame, buffer = buffer[4:4 + size], buffer[4 + size:]
        yield _loads(frame)


def serve(requests_fd=0, replies_fd=None, modules=()):
    """Run cells as the grader sends them, until it closes the request pipe."""
    if replies_fd is None:
        replies_fd = int(os.environ.get("GRADER_FD", "3"))
    frames = _frames(requests_fd)
    nonce = next(frames, None)
    if _type(nonce) is not str:
        return
    nonce = (nonce + " ").encode()
    preload(modules)
    # Student output never reaches the real stdout/stderr (the grader does not read them).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    for name in sys.builtin_module_names:  # all built in now: nothing needs _imp.create_builtin later
        __import__(name)
    import threading
    exposed = {"__builtins__": dict(vars(_builtins)), "io": io, "LIMIT": OUTPUT_LIMIT, "audit": sys.audit}
    exec(_EXPOSED, exposed)
    stream = exposed["CappedStream"]()
    take = exposed["CappedStream"].take  # bound now: student code may replace the class's method
    sys.stdout = sys.stderr = stream
    sys.stdin = io.StringIO("")
    main = _ModuleType("__main__")
    namespace = main.__dict__
    namespace.update({"__builtins__": _builtins, "get_ipython": exposed["Shell"]})
    sys.modules["__main__"] = main
    for name in [n for n in sys.modules if n == "autograder" or n.startswith("autograder.")] + [__name__]:
        if name != "__main__":
            sys.modules.pop(name, None)
    refuser = exposed["refuser"]
    # what these replace is dropped: student code cannot call the originals
    _thread.start_new_thread = _thread.start_new = threading._start_new_thread = refuser("starting a thread", "limit")
    _signal.signal = refuser("installing a signal handler", "limit")  # a handler receives the current frame
    gc.set_debug = refuser("gc.set_debug", "reach")  # DEBUG_SAVEALL would keep frames in gc.garbage
    _imp.create_builtin = refuser("re-creating a built-in module", "reach")  # a fresh _signal, _thread or gc
    modules, classes, names = {}, {}, {}
    _snapshot_modules(modules, classes)
    state = {"armed": False, "busy": False, "level": None, "cell": None, "asker": None, "protected": _set(),
             "refused": []}
    sys.addaudithook(_make_hook(state))
    state["armed"] = True
    _write(replies_fd, nonce + b"{'ready': True}\n")  # the clock of the first cell starts now
    for request in frames:
        test = request["test"]
        restored = []
        if test:
            _snapshot_modules(modules, classes)
            restored = _changed(modules, classes, names, namespace)
            _restore(modules, classes, names, namespace)
            protected = {_id(cls) for cls, _ in classes.values()}
            for _, attrs, code in modules.values():
                protected.update(_id(attrs[k]) for k in code)
            state["protected"] = protected
        sys.stdout = sys.stderr = stream
        before = dict(namespace) if request["locked"] else None
        state["refused"] = refused = []
        state["level"] = "test" if test else "locked" if request["locked"] else "student"
        state["cell"] = request["name"]
        reply = {"index": request["index"], "error": None, "value": None}
        wall, cpu = _perf(), _cpu()
        try:
            exec(compile(request["body"], request["name"], "exec"), namespace)
            if request["last"] is not None:
                value = eval(compile(request["last"], request["name"], "eval"), namespace)
                if _type(value) is int or _type(value) is float:
                    reply["value"] = float(value)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt count as errors in a cell too
            tb = _exc_info()[2]
            cell = tb.tb_next if tb is not None else None  # the cell's own frame, called from here
            reply["error"] = {"ename": _text(_type.__dict__["__name__"].__get__(_type(exc)), 200),
                              "evalue": _error_text(exc),
                              "line": cell.tb_lineno if cell is not None else None}
            del exc, tb, cell
        reply["seconds"] = _perf() - wall
        reply["cpu_seconds"] = _cpu() - cpu
        state["level"] = None
        state["refused"] = []
        # refused: limits (status timeout); reach: routes towards the grader; those taken by
        # student code make the submission tampered, and void a test they happen in
        reply["refused"] = [what for what, kind, _ in refused if kind == "limit"]
        reply["reached"] = [what for what, kind, student in refused if kind != "limit" and student]
        reply["restored"] = restored
        reply["tampered"] = []
        if test:  # student code that changes a guarded name while the test runs voids the test
            reply["tampered"] = _changed(modules, classes, names, namespace)
        if before is not None:
            _snapshot_modules(modules, classes)
            _snapshot_names(names, namespace, before)
        sys.stdout = sys.stderr = stream
        try:
            reply["output"] = _text(take(stream), OUTPUT_LIMIT + 200)
        except BaseException:
            reply["output"] = "<output lost: the output stream was tampered with>"
        reply["threads"] = _thread_count() + 1
        _write(replies_fd, nonce + repr(reply).encode("utf-8", "replace") + b"\n")


if __name__ == "__main__":
    serve()
