"""The judge: runs a submission's tests and forms their verdicts, and never runs the student's code.

A test cell is split here. Its lines inside `with student:` (course_utils.testing.student, which
does nothing in a notebook's kernel) run in the sandboxed runner, in the notebook's namespace; every
other line (inputs, reference values, assertions, the last expression that gives partial credit)
runs in this process, in a namespace built from the source's read-only cells only. A block is sent
as its code, the test's values it reads (data: autograder.codec) and the names it assigns; what
comes back is decoded as data and bound to those names, and arrays or tensors the block was given
are updated in place, as if the block had run here. A name the block assigned that is not data (a
model, an instance of the student's class) comes back as a codec.Remote marker: later blocks of the
same test use it in the runner, where it lives.

The judge is forked from the fork server (which never runs student code) and talks only to the
grader, over pipes, in msgpack frames: {"op": "setup", "cells"} -> {"op": "ready", "errors"};
{"op": "test", "index", "source", "name"} -> any number of {"op": "block", ...} answered by
{"op": "reply", "data"} or {"op": "failed", "why"}, then {"op": "done", "error", "value", "output"}.
"""
import ast
import builtins
import contextlib
import functools
import io
import types

import msgpack

from . import codec

OUTPUT_LIMIT = 20_000
STUDENT = "student"  # the name of the context manager in course_utils.testing


class TestError(Exception):
    """A test cell that cannot be split as written (a mistake of the course's author)."""


class StudentError(Exception):
    """The student's code raised inside `with student:`; carries its name and message."""

    def __init__(self, ename, evalue, line):
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue, self.line = ename, evalue, line


class BlockFailed(Exception):
    """The runner timed out, died or answered with something that is not a reply."""

    def __init__(self, why):
        super().__init__(why)
        self.why = why


class GraderFault(Exception):
    """Something the student did not cause: an installed library failed to import in the runner."""


def _is_block(node):
    return (isinstance(node, (ast.With, ast.AsyncWith)) and len(node.items) == 1
            and isinstance(node.items[0].context_expr, ast.Name) and node.items[0].context_expr.id == STUDENT
            and node.items[0].optional_vars is None)


def _names(nodes):
    """(loaded, stored) names of statements; stored ones only at their own scope's level."""
    loaded, stored = set(), set()

    def visit(node, top):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            loaded.add(node.target.id)  # x += 1 reads x too
        if isinstance(node, ast.Name):
            (stored if isinstance(node.ctx, (ast.Store, ast.Del)) and top else loaded).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if top:
                stored.add(node.name)
            for child in ast.iter_child_nodes(node):
                visit(child, False)
            return
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and top:
            stored.update((alias.asname or alias.name).split(".")[0] for alias in node.names if alias.name != "*")
        elif isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            for child in ast.iter_child_nodes(node):
                visit(child, False)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, top)

    for node in nodes:
        visit(node, True)
    return loaded, stored


def _block_source(lines, block):
    """The block's statements, dedented, at their original line numbers."""
    first, last = block.body[0].lineno, block.body[-1].end_lineno
    indent = block.body[0].col_offset
    body = [line[indent:] if line[:indent].strip() == "" else line for line in lines[first - 1:last]]
    return "\n" * (first - 1) + "\n".join(body) + "\n"


def _hidden_lines(source):
    """1-based numbers of the lines inside BEGIN/END HIDDEN TESTS."""
    hidden, inside = set(), False
    for number, line in enumerate(source.splitlines(), 1):
        if "BEGIN HIDDEN TESTS" in line:
            inside = True
        elif "END HIDDEN TESTS" in line:
            inside = False
        elif inside:
            hidden.add(number)
    return frozenset(hidden)


class Split:
    """A test cell split into the judge's code and the blocks that run in the runner."""

    def __init__(self, source, name, student_names=()):
        self.name, self.filename = name, f"<test-{name}>"
        self.hidden = _hidden_lines(source)
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise TestError(f"{name}: {exc}") from None
        lines = source.splitlines()
        self.blocks = []
        judge = _Splitter(self, lines).visit(tree)
        loaded, stored = _names(judge.body)
        used = sorted((loaded - stored) & set(student_names))
        if used:
            raise TestError(f"{name} uses {', '.join(used)} outside `with student:` (the judge never runs "
                            "the student's code)")
        self.last = None
        if judge.body and isinstance(judge.body[-1], ast.Expr):  # nbgrader's partial credit
            self.last = compile(ast.Expression(judge.body.pop().value), self.filename, "eval")
        ast.fix_missing_locations(judge)
        self.code = compile(judge, self.filename, "exec")


class _Splitter(ast.NodeTransformer):
    def __init__(self, split, lines):
        self.split, self.lines = split, lines

    def visit_With(self, node):
        if not _is_block(node):
            return self.generic_visit(node)
        loaded, stored = _names(node.body)
        for inner in ast.walk(ast.Module(body=node.body, type_ignores=[])):
            if isinstance(inner, ast.Assert) or (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
                                                 and inner.func.id.startswith("check_")):
                raise TestError(f"{self.split.name}, line {inner.lineno}: a `with student:` block runs in the "
                                "student's process and must not check anything; assign what the test checks")
        number = len(self.split.blocks)
        self.split.blocks.append({
            "block": _block_source(self.lines, node), "inputs": sorted(loaded), "outputs": sorted(stored),
            "hidden": node.lineno in self.split.hidden, "line": node.lineno})
        result = f"__student_block_{number}__"
        code = [f"{result} = __student__({number}, locals())"]
        code += [f"if {name!r} in {result}: {name} = {result}[{name!r}]" for name in sorted(stored)]
        new = ast.parse("\n".join(code)).body
        for statement in new:
            for inner in ast.walk(statement):
                if hasattr(inner, "lineno"):
                    inner.lineno = inner.end_lineno = node.lineno
                    inner.col_offset, inner.end_col_offset = node.col_offset, node.col_offset + 1
        return new

    visit_AsyncWith = visit_With


@functools.lru_cache(maxsize=1024)
def split(source, name, student_names=frozenset()):
    return Split(source, name, student_names)


def student_names(answer_sources):
    """Names the source's answer cells define at their top level: never bound in the judge."""
    names = set()
    for source in answer_sources:
        try:
            names |= _names(ast.parse(source).body)[1]
        except SyntaxError:
            pass
    return frozenset(names)


def _sendable(name, value):
    """The codec bytes of a test value a block reads, or None for what the runner has itself."""
    if isinstance(value, (codec.Remote, types.ModuleType, type)) or value is builtins:
        return None
    if callable(value) and not hasattr(value, "shape"):
        code = getattr(value, "__code__", None)
        if code is not None and code.co_filename.startswith("<test-"):
            raise TestError(f"`{name}` is a function of the test: define it inside `with student:` to use it there")
        return None
    try:
        return codec.encode(value, strict=True)
    except codec.NotData as exc:
        raise TestError(f"`{name}` cannot be sent to the student's process ({exc}): build it inside "
                        "`with student:`") from None


def _copy_back(original, value):
    """An array or tensor a block was given, changed as the block changed it."""
    import numpy as np
    try:
        import torch
    except ImportError:
        torch = None
    if isinstance(original, np.ndarray) and isinstance(value, np.ndarray):
        if original.shape == value.shape and original.flags.writeable and not np.array_equal(original, value, equal_nan=value.dtype.kind in "fc"):
            np.copyto(original, value, casting="unsafe")
    elif torch is not None and isinstance(original, torch.Tensor) and isinstance(value, torch.Tensor):
        if original.shape == value.shape and not torch.equal(original.detach(), value.detach().to(original.dtype)):
            with torch.no_grad():
                original.copy_(value)
        if original.is_leaf and original.requires_grad and value.grad is not None and value.grad.shape == original.shape:
            original.grad = value.grad.to(original.dtype)


class Judge:
    def __init__(self, read, write):
        self.read, self.write = read, write
        self.namespace = None

    def send(self, message):
        codec.send(self.write, msgpack.packb(message, use_bin_type=True))

    def receive(self):
        frame = next(self.frames)
        return msgpack.unpackb(frame, raw=False)

    def setup(self, cells):
        """A fresh namespace from the source's read-only cells (trusted code: never the student's)."""
        self.namespace = {"__name__": "__judge__", "__builtins__": builtins}
        errors = []
        for index, source in cells:
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    exec(compile(source, f"<read-only-{index}>", "exec"), self.namespace)
            except BaseException as exc:
                errors.append(f"read-only cell {index + 1}: {type(exc).__name__}: {exc}"[:400])
        return errors

    def block(self, test, split, number, scope):
        spec = split.blocks[number]
        inputs, given = {}, {}
        for name in spec["inputs"]:
            value = scope[name] if name in scope else self.namespace.get(name, _MISSING)
            if value is _MISSING:
                continue
            data = _sendable(name, value)
            if data is not None:
                inputs[name], given[name] = value, data
        self.send({"op": "block", "test": test, "block": spec["block"], "name": split.filename,
                   "inputs": codec.encode(inputs, strict=True), "outputs": spec["outputs"], "hidden": spec["hidden"]})
        message = self.receive()
        if message.get("op") != "reply":
            raise BlockFailed(message.get("why", "the student's process failed"))
        try:
            reply = msgpack.unpackb(message["data"], raw=False, strict_map_key=False)
            error = reply.get("error")
            values = {str(k): codec.decode(v) for k, v in reply.get("values", {}).items() if k in spec["outputs"]}
            changed = {str(k): codec.decode(v) for k, v in reply.get("inputs", {}).items() if k in inputs}
        except (ValueError, TypeError, AttributeError, KeyError, msgpack.ExtraData, msgpack.FormatError,
                msgpack.StackError) as exc:
            raise BlockFailed(f"the student's process sent a malformed reply ({type(exc).__name__})") from None
        if error:
            ename, evalue = str(error.get("ename", "Error"))[:200], str(error.get("evalue", ""))[:2000]
            if ename in ("ImportError", "ModuleNotFoundError"):
                raise GraderFault(f"{ename} in the student's process while a test ran: {evalue}")
            line = error.get("line")
            raise StudentError(ename, evalue, line if isinstance(line, int) else spec["line"])
        for name, value in changed.items():
            _copy_back(inputs[name], value)
        for name, value in values.items():
            if isinstance(value, codec.Remote):
                value.name = name
        return values

    def test(self, index, source, name, student_names):
        reply = {"op": "done", "error": None, "value": None, "output": ""}
        stream = io.StringIO()
        try:
            test = split(source, name, student_names)
        except TestError as exc:
            reply["error"] = {"ename": "TestError", "evalue": str(exc), "line": None, "fault": True}
            return reply
        namespace = self.namespace
        namespace["__student__"] = lambda number, scope: self.block(index, test, number, scope)
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(io.StringIO()):
                exec(test.code, namespace)
                if test.last is not None:
                    value = eval(test.last, namespace)
                    if type(value) in (int, float) or type(value).__module__ == "numpy" and hasattr(value, "item"):
                        value = float(value)
                        reply["value"] = value
        except StudentError as exc:
            reply["error"] = {"ename": exc.ename, "evalue": exc.evalue, "line": exc.line, "student": True}
        except BlockFailed as exc:
            reply["error"] = {"ename": "BlockFailed", "evalue": exc.why, "line": None}
        except GraderFault as exc:
            reply["error"] = {"ename": "GraderFault", "evalue": str(exc)[:2000], "line": None, "fault": True}
        except TestError as exc:
            reply["error"] = {"ename": "TestError", "evalue": str(exc), "line": None, "fault": True}
        except BaseException as exc:
            tb, line = exc.__traceback__, None
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == test.filename:
                    line = tb.tb_lineno
                tb = tb.tb_next
            reply["error"] = {"ename": type(exc).__name__, "evalue": str(exc)[:2000], "line": line}
        finally:
            namespace.pop("__student__", None)
        error = reply["error"]
        if error is not None:
            error["hidden"] = error.get("line") in test.hidden
        reply["output"] = stream.getvalue()[:OUTPUT_LIMIT]
        return reply

    def serve(self):
        self.frames = codec.frames(self.read)
        for frame in self.frames:
            message = msgpack.unpackb(frame, raw=False)
            if message["op"] == "setup":
                self.send({"op": "ready", "errors": self.setup(message["cells"])})
            elif message["op"] == "test":
                self.send(self.test(message["index"], message["source"], message["name"],
                                    frozenset(message["student_names"])))


_MISSING = object()


def serve(read_fd, write_fd):
    Judge(read_fd, write_fd).serve()
