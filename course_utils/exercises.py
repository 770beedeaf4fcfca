"""What a student sees while exercises are still unanswered: one line naming the exercise, not a
traceback, in the cell that calls it and in the demos and cells that depend on it.

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


def _left_undefined(shell, tb):
    """The names that the cell a stub stopped would have assigned at its top level and did not."""
    while tb is not None and tb.tb_frame.f_globals is not shell.user_ns:
        tb = tb.tb_next                         # skip IPython's own frames, down to the cell's code
    if tb is None:
        return set()
    stored = {op.argval for op in dis.get_instructions(tb.tb_frame.f_code) if op.opname in ("STORE_NAME", "STORE_GLOBAL")}
    return stored - set(shell.user_ns)


def _blame(error, left_undefined, unanswered):
    """The exercise(s) whose stopped cell left the name of a NameError undefined; all of them if none did."""
    blamed = [name for name in dict.fromkeys(unanswered) if getattr(error, "name", None) in left_undefined.get(name, ())]
    return " or ".join(blamed or dict.fromkeys(unanswered))


def is_stub(answer):
    """True while a function, or any method of a class, still has the release's stub body."""
    functions = [answer] if callable(answer) and not isinstance(answer, type) else list(vars(answer).values())
    codes = [getattr(f, "__code__", None) for f in functions]
    return any(STUB in const for code in codes if code is not None
               for const in code.co_consts if isinstance(const, str))


class Unanswered(Exception):
    """Stops a demo cell with one line (IPython shows no traceback for it)."""

    def _render_traceback_(self):
        return [str(self)]


def needs(*answers):
    """Call first in a demo cell: raise Unanswered, naming them, if any of these exercises
    (functions or classes) is still the release's stub, before the demo spends time on anything."""
    todo = [answer.__name__ for answer in answers if is_stub(answer)]
    if todo:
        raise Unanswered(f"finish {', '.join(todo)} above to see this demo")


def explain_unanswered(shell=None):
    """In IPython (JupyterLab): a stub's NotImplementedError prints one line naming the exercise
    instead of a traceback, and so does a NameError in a later cell while an exercise is unanswered
    (a name the stopped cell never defined). Any other error keeps its traceback. Outside IPython
    (plain Python, the grader) nothing changes."""
    if shell is None and "IPython" in sys.modules:  # never imports IPython itself
        shell = sys.modules["IPython"].get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return
    unanswered = []
    left_undefined = {}  # exercise -> the names the cells it stopped did not define

    def one_line(shell, etype, value, tb, tb_offset=None):
        name = _stub_name(value)
        if name is not None:
            left_undefined.setdefault(name, set()).update(_left_undefined(shell, tb))
            unanswered.append(name)
            print(f"{name}{STUB}: write it in its cell above, run that cell, then this one again.")
        elif etype is NameError and unanswered:
            print(f"NameError: {value}: an earlier cell stopped at an unanswered exercise ({_blame(value, left_undefined, unanswered)}).")
        else:  # IPython shows nothing for a handled exception type unless the handler does
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((NotImplementedError, NameError), one_line)
