"""The process that runs a submission's code: plain Python, one cell at a time, no IPython.

It is forked by autograder.sandbox inside the sandbox, and nothing in it is trusted: it decides no
grade and holds no expected value, so student code may do anything to it. The grader sends
length-prefixed msgpack frames on fd 0 and reads frames back on fd $GRADER_FD:

- a cell: {"index", "body", "name"} -> {"index", "error", "output"}: the student's cells, the
  read-only cells and the code cells the student added;
- a block: {"index", "block", "name", "test", "inputs", "outputs"} -> {"index", "error", "output",
  "values", "inputs"}: the lines of a test inside `with student:`. `inputs` (the test's values the
  block uses, as codec bytes) are bound as globals, the block runs in the notebook's namespace, and
  the names it assigned come back as codec bytes, with the arrays and tensors it was given (a
  function may change them in place). The names a test added or rebound are put back when the next
  cell or test comes, so one test's values are gone before anything else runs.

Every value goes through autograder.codec, which the judge decodes as data only. Output is capped
per cell; the grader caps it per submission too.
"""
import io
import os
import sys
import types

import msgpack

from autograder import codec

PRELOAD = ["course_utils", "ipywidgets", "matplotlib.pyplot", "torch._dynamo"]
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


class Shell:
    """Stands in for get_ipython(): magics and shell escapes do nothing while grading."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def preload(modules=()):
    """Import what tests and setup cells rely on, once, in the fork server."""
    for name in [*PRELOAD, *modules]:
        try:
            __import__(name)
        except Exception:  # a module that does not import here fails in the cell that imports it, as it would
            pass


def _error(exc, name):
    tb = exc.__traceback__
    line = None
    while tb is not None:  # the innermost line of the cell or block itself (not of a function it called)
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return {"ename": type(exc).__name__, "evalue": str(exc)[:2000], "line": line}


def _encoded(value):
    """Data as data; anything else (a model, a dict holding a function) stays here, as a Remote."""
    try:
        return codec.encode(value, strict=True)
    except Exception:
        return codec.encode(codec.Remote(type(value).__name__))


class Namespace:
    """The notebook's globals, and what a test's blocks changed in them."""

    _missing = object()

    def __init__(self):
        self.main = types.ModuleType("__main__")
        self.globals = self.main.__dict__
        self.globals["get_ipython"] = Shell
        sys.modules["__main__"] = self.main
        self.test, self.saved = None, {}

    def enter_test(self, test):
        if self.test != test:
            self.leave_test()
            self.test = test

    def remember(self, name):
        if name not in self.saved:
            self.saved[name] = self.globals.get(name, self._missing)

    def bind(self, name, value):
        self.remember(name)
        self.globals[name] = value

    def leave_test(self):
        """Put back every name the last test's blocks assigned or were given."""
        for name, old in self.saved.items():
            if old is self._missing:
                self.globals.pop(name, None)
            else:
                self.globals[name] = old
        self.test, self.saved = None, {}


def run(request, namespace):
    reply = {"index": request["index"], "error": None}
    block, given, outputs = "block" in request, {}, []
    try:
        if block:
            namespace.enter_test(request["test"])
            given, outputs = codec.decode(request["inputs"], imports=True), request["outputs"]
            for name, value in given.items():
                namespace.bind(name, value)
            for name in outputs:  # what the block assigns is put back after the test
                namespace.remember(name)
            exec(compile(request["block"], request["name"], "exec"), namespace.globals)
        else:
            namespace.leave_test()
            exec(compile(request["body"], request["name"], "exec"), namespace.globals)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt count as errors in a cell too
        reply["error"] = _error(exc, request.get("name"))
    if block:
        reply["values"] = {name: _encoded(namespace.globals[name]) for name in outputs if name in namespace.globals}
        reply["inputs"] = {name: _encoded(value) for name, value in given.items()  # as the block left them
                           if isinstance(value, (list, tuple, dict, set)) or type(value).__module__ in ("numpy", "torch")}
    return reply


def serve(requests_fd=0, replies_fd=None):
    """Run cells and blocks as the grader sends them, until it closes the request pipe."""
    if replies_fd is None:
        replies_fd = int(os.environ.get("GRADER_FD", "3"))
    devnull = os.open(os.devnull, os.O_WRONLY)  # student output never reaches the real stdout/stderr
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    stream = CappedStream()
    sys.stdin = io.StringIO("")
    namespace = Namespace()
    me = os.getpid()
    codec.send(replies_fd, msgpack.packb({"ready": True}))  # the clock of the first cell starts now
    for frame in codec.frames(requests_fd):
        request = msgpack.unpackb(frame, raw=False)
        sys.stdout = sys.stderr = stream
        reply = run(request, namespace)
        if os.getpid() != me:  # a process the student's code forked leaves here, without a word
            os._exit(0)
        sys.stdout = sys.stderr = stream
        reply["output"] = stream.take()
        codec.send(replies_fd, msgpack.packb(reply, use_bin_type=True))
