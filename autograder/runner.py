"""The process that runs a submission's code: plain Python, one cell at a time, no IPython.

It is started by autograder.sandbox (as a standalone script: it imports nothing from the
autograder package) and driven by the grader over two pipes: requests arrive on stdin as JSON
lines {"index", "source", "test", "locked"}, and one JSON line per cell goes back on the pipe
named by $GRADER_FD. Student output goes to capped buffers, never to the protocol pipe.

Before each test cell the runner puts back what student code may have changed: every attribute
of the modules and classes tests rely on (and the code of their Python functions), the names that
the read-only cells bound, the trace and profile hooks; after it, it reports what changed while
the test ran (Sentry, an audit hook, refuses the worst of it outright). Without IPython there are no input or
AST transformers, events, custom exception handlers or traceback hooks to subvert a test.
"""
import ast
import builtins
import io
import json
import os
import sys
import time
import traceback
import threading
import types

GUARDED = ["builtins", "math", "operator", "functools", "numpy", "numpy.testing", "numpy.linalg", "torch",
           "torch.testing", "torch.nn.functional", "torch.linalg", "course_utils.testing", "course_utils.gradcheck"]
GUARDED_CLASSES = [("torch", "Tensor")]  # Python classes whose methods tests rely on
OUTPUT_LIMIT = 20_000  # characters of stdout+stderr kept per cell


class CappedStream(io.TextIOBase):
    def __init__(self):
        self.parts, self.size, self.dropped = [], 0, 0

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        room = OUTPUT_LIMIT - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def take(self):
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n[... {self.dropped} more characters of output dropped]"
        self.parts, self.size, self.dropped = [], 0, 0
        return text


class _Shell:
    """Stands in for get_ipython(): magics and shell escapes do nothing while grading."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Guard:
    """Snapshots of what tests rely on, to restore before each test and compare after it."""

    def __init__(self):
        self.modules = {}
        self.names = {}
        self.classes = {}

    def snapshot_modules(self):
        for name in GUARDED:
            module = sys.modules.get(name)
            if module is None or name in self.modules:
                continue
            attrs = dict(vars(module))
            code = {k: (v.__code__, v.__defaults__, v.__kwdefaults__) for k, v in attrs.items()
                    if isinstance(v, types.FunctionType)}
            self.modules[name] = (module, attrs, code)
        for module_name, class_name in GUARDED_CLASSES:
            cls = getattr(sys.modules.get(module_name), class_name, None)
            if cls is not None and (module_name, class_name) not in self.classes:
                self.classes[(module_name, class_name)] = (cls, dict(vars(cls)))

    def snapshot_names(self, namespace, before):
        for key, value in namespace.items():
            if not key.startswith("__") and (key not in before or before[key] is not value):
                if isinstance(value, (types.ModuleType, types.FunctionType, type, types.BuiltinFunctionType)):
                    self.names[key] = value

    def changed(self, namespace=None):
        """Guarded names that differ from the snapshot (checked after each test)."""
        found = [k for k, v in self.names.items() if namespace is not None and namespace.get(k, None) is not v]
        for name, (module, attrs, code) in self.modules.items():
            current = vars(module)
            found += [f"{name}.{k}" for k, v in attrs.items() if current.get(k, None) is not v]
            found += [f"{name}.{k}.__code__" for k, (co, _, _) in code.items() if attrs[k].__code__ is not co]
        for (module_name, class_name), (cls, attrs) in self.classes.items():
            current = vars(cls)
            found += [f"{module_name}.{class_name}.{k}" for k, v in attrs.items() if current.get(k, None) is not v]
            found += [f"{module_name}.{class_name}.{k}" for k in current if k not in attrs]
        return found

    def restore(self, namespace):
        sys.settrace(None)
        sys.setprofile(None)
        for module, attrs, code in self.modules.values():
            current = vars(module)
            for key, value in attrs.items():
                if current.get(key, None) is not value:
                    current[key] = value
            for key, (co, defaults, kwdefaults) in code.items():
                fn = attrs[key]
                if fn.__code__ is not co:
                    fn.__code__ = co
                fn.__defaults__, fn.__kwdefaults__ = defaults, kwdefaults
        for cls, attrs in self.classes.values():
            current = vars(cls)
            for key in [k for k in current if k not in attrs]:
                delattr(cls, key)
            for key, value in attrs.items():
                if current.get(key, None) is not value:
                    setattr(cls, key, value)
        namespace.update(self.names)
        namespace["__builtins__"] = builtins


class Sentry:
    """An audit hook (it cannot be removed once added). In the student's cells and in tests it
    refuses to start processes or open network connections; while a test runs it also refuses the
    operations that could change what the test concludes: trace and profile hooks, ctypes, walking
    the heap, and assigning attributes of the guarded classes and functions."""

    STUDENT = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
               "pty.spawn", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg")
    TEST = ("sys.settrace", "sys.setprofile", "ctypes.", "gc.get_referrers", "gc.get_objects")

    def __init__(self):
        self.level = None  # None (trusted code), "student" or "test"
        self.refused = []
        self.protected = set()  # ids of guarded classes and functions

    def protect(self, guard):
        self.protected = {id(cls) for cls, _ in guard.classes.values()}
        for _, attrs, code in guard.modules.values():
            self.protected.update(id(attrs[k]) for k in code)

    def refuse(self, what):
        self.refused.append(what)
        raise RuntimeError(f"{what} is not allowed while grading")

    def __call__(self, event, args):
        if self.level is None:
            return
        if event.startswith(self.STUDENT):
            self.refuse(event)
        if self.level == "test" and (event.startswith(self.TEST) or
                                     (event == "object.__setattr__" and id(args[0]) in self.protected)):
            self.refuse(event)

    def block_threads(self):
        """No audit event covers starting a thread in Python 3.11: refuse it at the source."""
        import _thread

        def refused(*args, **kwargs):
            if self.level is None:
                return original(*args, **kwargs)
            self.refuse("starting a thread")
        original = _thread.start_new_thread
        _thread.start_new_thread = threading._start_new_thread = refused


def _transform(source):
    """IPython syntax (magics, !shell) turned into plain calls on the stand-in shell."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def run_cell(source, namespace, test, name):
    """Execute one cell; for a test cell, return its last value when it is a plain number
    (nbgrader's partial credit)."""
    tree = ast.parse(_transform(source), filename=name, mode="exec")
    last = None
    if test and tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, name, "exec"), namespace)
    if last is not None:
        value = eval(compile(last, name, "eval"), namespace)
        if type(value) in (int, float):
            return float(value)
    return None


def main():
    protocol = os.fdopen(int(os.environ.get("GRADER_FD", "3")), "w", buffering=1)
    # Student output never reaches the real stdout/stderr (the grader does not read them).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    stream = CappedStream()
    sys.stdout = sys.stderr = stream
    namespace = {"__name__": "__main__", "__builtins__": builtins, "get_ipython": _Shell}
    guard = Guard()
    sentry = Sentry()
    sys.addaudithook(sentry)
    sentry.block_threads()
    tic = time.perf_counter()
    for name in GUARDED:  # snapshot before any student code runs
        try:
            __import__(name)
        except ImportError:
            pass
    guard.snapshot_modules()
    startup = time.perf_counter() - tic  # the imports the notebook's setup cell would have paid
    for line in sys.stdin:
        request = json.loads(line)
        test = request.get("test", False)
        restored = []
        if test:
            guard.snapshot_modules()
            restored = guard.changed(namespace)
            guard.restore(namespace)
            sentry.protect(guard)
            sys.stdout = sys.stderr = stream
        before = dict(namespace) if request.get("locked") else None
        tic = time.perf_counter()
        reply = {"index": request["index"], "error": None, "value": None, "restored": restored}
        name = f"<cell-{request['index']}>"
        sentry.refused = []
        sentry.level = "test" if test else None if request.get("locked") else "student"
        try:
            reply["value"] = run_cell(request["source"], namespace, test, name)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt count as errors in a cell too
            tb = traceback.extract_tb(exc.__traceback__)
            lines = [frame.lineno for frame in tb if frame.filename == name]
            reply["error"] = {"ename": type(exc).__name__, "evalue": _safe_str(exc),
                              "line": lines[-1] if lines else None}
        sentry.level = None
        reply["refused"] = sorted(set(sentry.refused))
        if test:
            # Student code that rebinds a guarded name while the test runs voids the test.
            reply["tampered"] = sorted(set(guard.changed(namespace) + [
                r for r in sentry.refused if not r.startswith(Sentry.STUDENT) and r != "starting a thread"]))
        if before is not None:
            guard.snapshot_modules()
            guard.snapshot_names(namespace, before)
        reply["seconds"] = round(time.perf_counter() - tic + startup, 3)
        startup = 0.0
        sys.stdout = sys.stderr = stream
        reply["output"] = stream.take()
        reply["threads"] = len(sys._current_frames())
        protocol.write(json.dumps(reply) + "\n")


def _safe_str(exc):
    try:
        return str(exc)[:2000]
    except BaseException:
        return "<unprintable exception>"


if __name__ == "__main__":
    main()
