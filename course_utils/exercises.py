"""What a student sees while exercises are still unanswered: one line naming the exercise, not a
traceback, in the cell that calls it and in the demos and cells that depend on it.

The line a student must act on (the exercise to write, in the cell that called it) is the cell's
error, which JupyterLab draws in its red error box; the lines that only follow from it (a demo that
waits for an exercise, a name an earlier cell never defined) are plain text.

An unanswered exercise is the release's stub (nbgrader_config.py's code stub):
`raise NotImplementedError("<grade_id> is not answered yet: replace this line with your code")`.
"""
import dis
import sys

STUB = " is not answered yet"


def _stub_name(error):
    """The exercise named by a stub's NotImplementedError, or None for any other error."""
    text = str(error)
    return text.split(STUB)[0] if isinstance(error, NotImplementedError) and STUB in text else None


def _names_left_undefined(shell, cell):
    """The names that `cell` assigns at its top level and that do not exist: it stopped before them."""
    try:
        code = compile(shell.transform_cell(cell), "<cell>", "exec")
    except (SyntaxError, ValueError):
        return set()
    stored = {op.argval for op in dis.get_instructions(code) if op.opname in ("STORE_NAME", "STORE_GLOBAL")}
    return stored - set(shell.user_ns)


def _culprits(error, left_undefined, unanswered):
    """The unanswered exercise(s) an error comes from: a stub's own, a demo's `needs`, or for a
    NameError the exercise whose stopped cell left that name undefined (all of them if none did)."""
    if _stub_name(error) is not None:
        return [_stub_name(error)]
    if isinstance(error, Unanswered):
        return list(getattr(error, "exercises", []))
    if isinstance(error, NameError) and unanswered:
        every = list(dict.fromkeys(unanswered))
        return [name for name in every if getattr(error, "name", None) in left_undefined.get(name, ())] or every
    return []


def is_stub(answer):
    """True while a function, or any method of a class, still has the release's stub body."""
    functions = [answer] if callable(answer) and not isinstance(answer, type) else list(vars(answer).values())
    codes = [getattr(f, "__code__", None) for f in functions]
    return any(STUB in const for code in codes if code is not None
               for const in code.co_consts if isinstance(const, str))


class Unanswered(Exception):
    """Stops a demo cell with one line (IPython shows no traceback for it; with explain_unanswered it
    is plain text, not an error box)."""

    def _render_traceback_(self):
        return [str(self)]


def _as_error(shell, etype, value, tb, line):
    """Show `line`, in bold, as the cell's error output (the red box), with no traceback."""
    value._render_traceback_ = lambda: [f"\x1b[1m{line}\x1b[0m"]  # IPython's hook for a custom traceback
    shell.showtraceback((etype, value, tb))


def needs(*answers):
    """Call first in a demo cell: raise Unanswered, naming them, if any of these exercises
    (functions or classes) is still the release's stub, before the demo spends time on anything."""
    todo = [answer.__name__ for answer in answers if is_stub(answer)]
    if todo:
        error = Unanswered(f"finish {', '.join(todo)} above to see this demo")
        error.exercises = todo
        raise error


def explain_unanswered(shell=None):
    """In IPython (JupyterLab): a stub's NotImplementedError shows one line naming the exercise,
    as the cell's error (the red box) instead of a traceback; a NameError in a later cell while an
    exercise is unanswered (a name the stopped cell never defined) and a demo's `needs` print one
    plain line. Any other error keeps its traceback. Outside IPython (plain Python, the grader)
    nothing changes."""
    if shell is None and "IPython" in sys.modules:  # never imports IPython itself
        shell = sys.modules["IPython"].get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return
    unanswered = []
    left_undefined = {}  # exercise -> the names that the cells it stopped did not define

    def remember(result):  # after each cell that an unanswered exercise stopped, directly or not
        error = getattr(result, "error_in_exec", None)
        for exercise in _culprits(error, left_undefined, unanswered) if error is not None else ():
            cell = getattr(getattr(result, "info", None), "raw_cell", None) or ""
            left_undefined.setdefault(exercise, set()).update(_names_left_undefined(shell, cell))

    shell.events.register("post_run_cell", remember)

    def one_line(shell, etype, value, tb, tb_offset=None):
        name = _stub_name(value)
        if name is not None:
            unanswered.append(name)
            _as_error(shell, etype, value, tb, f"{name}{STUB}: write it in its cell above, run that cell, then this one again.")
        elif etype is Unanswered:
            print(value)
        elif etype is NameError and unanswered:
            exercises = " or ".join(_culprits(value, left_undefined, unanswered))
            print(f"NameError: {value}: an earlier cell stopped at an unanswered exercise ({exercises}).")
        else:  # IPython shows nothing for a handled exception type unless the handler does
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((NotImplementedError, NameError, Unanswered), one_line)
