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
import symtable

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
    loaded, stored, arguments = set(), set(), set()

    def visit(node, top):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            loaded.add(node.target.id)  # x += 1 reads x too
        if isinstance(node, ast.arg):
            arguments.add(node.arg)
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
    return loaded, stored, arguments


def _free_names(body):
    """Names a block may read from the test: every name a statement reads that an earlier
    statement of the block did not assign unconditionally (Python's own scoping, by symtable: the
    parameters and locals of a function or lambda the block defines are not the test's)."""
    free, assigned = set(), set()
    for statement in body:
        function = ast.FunctionDef(name="__block__", args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[],
                                                                         kw_defaults=[], defaults=[]),
                                   body=[statement], decorator_list=[], returns=None)
        module = ast.fix_missing_locations(ast.Module(body=[function], type_ignores=[]))
        table = symtable.symtable(ast.unparse(module), "<block>", "exec").get_children()[0]
        reads = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
        nested = list(table.get_children())
        while nested:
            current = nested.pop()
            reads.update(s.get_name() for s in current.get_symbols() if s.is_global() and s.is_referenced())
            nested.extend(current.get_children())
        if isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
            reads.add(statement.target.id)  # x += 1 reads x
        free |= reads - assigned
        if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Import, ast.ImportFrom,
                                  ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            assigned |= _names([statement])[1]
    return free


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
        loaded, stored, arguments = _names(judge.body)
        used = sorted((loaded - stored - arguments) & set(student_names))
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
        _, stored, _ = _names(node.body)
        for inner in ast.walk(ast.Module(body=node.body, type_ignores=[])):
            if isinstance(inner, ast.Assert) or (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
                                                 and inner.func.id.startswith("check_")):
                raise TestError(f"{self.split.name}, line {inner.lineno}: a `with student:` block runs in the "
                                "student's process and must not check anything; assign what the test checks")
        number = len(self.split.blocks)
        self.split.blocks.append({
            "block": _block_source(self.lines, node), "inputs": sorted(_free_names(node.body)), "outputs": sorted(stored),
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


def _copy_back(original, value):
    """Make a value a block was given (an array, a tensor, or a list, tuple, dict or set holding
    them) what the block left it, in place, as if the block had run here."""
    import numpy as np
    import torch
    if isinstance(original, np.ndarray) and isinstance(value, np.ndarray):
        if _fits(original, value) and original.flags.writeable and not np.array_equal(
                original, value, equal_nan=value.dtype.kind in "fc"):
            np.copyto(original, value)
    elif isinstance(original, torch.Tensor) and isinstance(value, torch.Tensor):
        if _fits(original, value) and not torch.equal(original.detach(), value.detach()):
            with torch.no_grad():
                original.copy_(value)
        if original.is_leaf and original.requires_grad and value.grad is not None and value.grad.shape == original.shape:
            original.grad = value.grad.to(original.dtype)
    elif isinstance(original, tuple) and isinstance(value, tuple) and len(original) == len(value):
        for old, new in zip(original, value):  # a tuple cannot change, what it holds can
            _copy_back(old, new)
    elif isinstance(original, list) and isinstance(value, list):
        if len(original) != len(value):
            original[:] = value
        for i, (old, new) in enumerate(zip(original, value)):
            if not _kept(old, new):
                original[i] = new
    elif isinstance(original, dict) and isinstance(value, dict):
        for key in [k for k in original if k not in value]:
            del original[key]
        for key, new in value.items():
            if key not in original or not _kept(original[key], new):
                original[key] = new
    elif isinstance(original, set) and isinstance(value, set) and original != value:
        original.clear()
        original.update(value)


def _fits(original, value):
    return original.shape == value.shape and original.dtype == value.dtype


def _kept(old, new):
    """True when `old` stays (brought up to date in place) as what a container now holds."""
    import numpy as np
    import torch
    if isinstance(old, (np.ndarray, torch.Tensor)):
        if type(old) is type(new) and _fits(old, new):
            _copy_back(old, new)
            return True
        return False
    if isinstance(old, (list, dict, set, tuple)) and type(old) is type(new):
        _copy_back(old, new)
        return not isinstance(old, tuple) or all(_kept(o, n) for o, n in zip(old, new)) and len(old) == len(new)
    try:
        return type(old) is type(new) and bool(old == new)
    except Exception:
        return False


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
        # a list the runner hands back cannot shorten a loop of checks over zip(...) unnoticed
        self.namespace["zip"] = functools.partial(zip, strict=True)
        self.read_only = dict(self.namespace)
        return errors

    def sendable(self, name, value):
        """What the runner gets for a test's value a block reads: the value itself when it is data,
        an Import of a module or a library's class or function, or _MISSING when the runner has this
        very object from the same read-only cell. Anything else is the test's mistake."""
        try:
            codec.encode(value, strict=True)
            return value
        except codec.NotData:
            pass
        if self.read_only.get(name, _MISSING) is value:
            return _MISSING
        if getattr(value, "__module__", None) != self.namespace["__name__"]:
            reference = codec.Import.of(value)
            if reference is not None:
                return reference
        raise TestError(f"`{name}` ({type(value).__name__}) cannot be sent to the student's process: "
                        "define or build it inside `with student:`")

    def block(self, test, split, number, scope):
        spec = split.blocks[number]
        inputs, given = {}, {}  # the test's objects, and what is sent for them
        for name in spec["inputs"]:
            value = scope[name] if name in scope else self.namespace.get(name, _MISSING)
            if value is _MISSING or isinstance(value, codec.Remote):
                continue  # a builtin, a student's name, or what an earlier block left in the runner
            sent = self.sendable(name, value)
            if sent is not _MISSING:
                inputs[name], given[name] = value, sent
        self.send({"op": "block", "test": test, "block": spec["block"], "name": split.filename,
                   "inputs": codec.encode(given, strict=True), "outputs": spec["outputs"], "hidden": spec["hidden"]})
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
