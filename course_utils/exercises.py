"""What a student sees while exercises are still unanswered: one line naming the exercise, not a
traceback, in the cell that calls it and in the demos and cells that depend on it.

The line a student must act on (the exercise to write, in the cell that called it) is the cell's
error, which JupyterLab draws in its red error box; the lines that only follow from it (a demo that
waits for an exercise, a name an earlier cell never defined) are plain text.

An unanswered exercise is the release's stub (nbgrader_config.py's code stub):
`raise NotImplementedError("<grade_id> is not answered yet: replace this line with your code")`.
"""
import sys

STUB = " is not answered yet"


def _stub_name(error):
    """The exercise named by a stub's NotImplementedError, or None for any other error."""
    text = str(error)
    return text.split(STUB)[0] if isinstance(error, NotImplementedError) and STUB in text else None


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
        raise Unanswered(f"finish {', '.join(todo)} above to see this demo")


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

    def one_line(shell, etype, value, tb, tb_offset=None):
        name = _stub_name(value)
        if name is not None:
            unanswered.append(name)
            _as_error(shell, etype, value, tb, f"{name}{STUB}: write it in its cell above, run that cell, then this one again.")
        elif etype is Unanswered:
            print(value)
        elif etype is NameError and unanswered:
            print(f"NameError: {value}: an earlier cell stopped at an unanswered exercise ({unanswered[-1]}).")
        else:  # IPython shows nothing for a handled exception type unless the handler does
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((NotImplementedError, NameError, Unanswered), one_line)
