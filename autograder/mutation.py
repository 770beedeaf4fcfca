"""Mutants written as small patches of the reference answer.

A mutant is `autograder/mutants/<assignment>/<grade_id>__<bug>.diff`: a unified diff (what
`diff -u` or `difflib.unified_diff` writes) from the reference answer cell, as it stands in the
source notebook, to the cell with one plausible bug. The bug is visible at a glance, a change to the
reference elsewhere in the cell carries over, and a patch whose lines are no longer in the
reference fails loudly. (Whole-cell mutants, `<grade_id>__<bug>.py`, are still accepted.)

Hunks are applied by content: each hunk's context and removed lines must appear, exactly and in
order, in the reference (line numbers in `@@` headers are only a hint), searching forward from the
previous hunk.
"""
import difflib


class PatchError(ValueError):
    pass


def _lines(text):
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines()]


def make_diff(reference, mutated, name="answer"):
    """The unified diff from `reference` to `mutated` (one line of context), to store as a mutant."""
    diff = "".join(difflib.unified_diff(_lines(reference), _lines(mutated), name, name, n=1))
    if not diff:
        raise PatchError("the mutant is identical to the reference")
    return diff


def _hunks(diff):
    hunks, current = [], None
    for number, line in enumerate(diff.splitlines(), 1):
        if line.startswith(("--- ", "+++ ")) and current is None:
            continue
        if line.startswith("@@"):
            current = ([], [])
            hunks.append(current)
        elif current is None:
            if line.strip():
                raise PatchError(f"line {number}: expected a '@@' hunk header, got {line!r}")
        elif line.startswith("\\"):  # "\ No newline at end of file"
            continue
        elif line[:1] in (" ", "", "-", "+"):
            tag, text = (line[:1] or " "), line[1:] + "\n"
            if tag != "+":
                current[0].append(text)
            if tag != "-":
                current[1].append(text)
        else:
            raise PatchError(f"line {number}: not a diff line: {line!r}")
    if not hunks:
        raise PatchError("no hunks")
    return hunks


def apply_diff(reference, diff):
    """`reference` with the diff's hunks applied; PatchError says which hunk no longer matches."""
    lines = _lines(reference)
    start = 0
    for number, (old, new) in enumerate(_hunks(diff), 1):
        at = next((i for i in range(start, len(lines) - len(old) + 1) if lines[i:i + len(old)] == old), None)
        if at is None:
            first = next((l for l in old if l.strip()), "").strip()
            raise PatchError(f"hunk {number} no longer applies: its lines (from {first!r}) are not in the reference")
        lines[at:at + len(old)] = new
        start = at + len(new)
    return "".join(lines).rstrip("\n")
