"""Answers that look copied: per answer cell, pairs of students whose code is unusually alike.

Fingerprints are copydetect's (tokens with names normalised, k-grams hashed and winnowed, as MOSS
does). What every student was given or is expected to write is excluded: the release's own text of
the cell (signature, docstring, stub) and the reference answer's k-grams. A pair is listed when the
fingerprints left in both answers overlap by at least `threshold` of the smaller answer. Answers
over ANSWER_LIMIT characters are not compared. A report
for a person to read, never a penalty: short answers and standard idioms can match by chance.
"""
import html
import io
import itertools

import nbformat
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import highlight_overlap

from . import course, notebooks

K, WINDOW = 15, 4          # noise threshold (tokens) and winnowing window: copydetect's own defaults are 25/1
THRESHOLD = 0.8          # share of the smaller answer's fingerprints found in the other
ANSWER_LIMIT = 20_000     # characters: a longer answer is not fingerprinted (this process is not sandboxed;
                          # tokenizing a megabyte takes seconds, and no exercise needs that much)
MIN_TOKENS = 30            # answers with fewer fingerprinted tokens left are too short to compare


def _fingerprint(code, boilerplate=()):
    return CodeFingerprint("answer.py", K, WINDOW, boilerplate=list(boilerplate), fp=io.StringIO(code))


def answer_cells(subs):
    """{(assignment, grade_id): {student: source}} of the answers each student changed."""
    cells, sources = {}, {}
    for sub in subs:
        if sub.refused or sub.path is None:
            continue
        if sub.assignment not in sources:
            source_nb = notebooks.read(course.source_notebook(sub.assignment))
            sources[sub.assignment] = (notebooks.answers(notebooks.student_version(source_nb)),
                                       notebooks.answers(source_nb))
        release, _ = sources[sub.assignment]
        try:
            submitted = notebooks.answers(nbformat.read(str(sub.path), as_version=4))
        except Exception:  # unreadable: its row says so; nothing to compare
            continue
        for gid, code in submitted.items():
            if gid in release and code.strip() != release[gid].strip():
                cells.setdefault((sub.assignment, gid), {})[sub.student_id] = code
    return cells, sources


def find_pairs(subs, threshold=THRESHOLD):
    """[{assignment, cell, a, b, similarity, code_a, code_b}] sorted by cell then similarity (HTML of
    each side with the shared parts marked)."""
    cells, sources = answer_cells(subs)
    pairs = []
    for (assignment, gid), answers in sorted(cells.items()):
        release, reference = sources[assignment]
        given = _fingerprint(release[gid]).hashes | _fingerprint(reference.get(gid, "")).hashes
        prints = {}
        for student, code in answers.items():
            if len(code) > ANSWER_LIMIT:
                continue
            try:
                fp = _fingerprint(code, given)
            except Exception:  # a tokenizer failure on odd text: that answer is left out
                continue
            if fp.token_coverage >= MIN_TOKENS:
                prints[student] = fp
        # only pairs that share fingerprints at all are compared: an index from hash to students
        shared = set()
        holders = {}
        for student, fp in prints.items():
            for h in fp.hashes:
                holders.setdefault(h, []).append(student)
        for group in holders.values():
            shared.update(itertools.combinations(sorted(group), 2))
        for a, b in sorted(shared):
            overlap, (sim_a, sim_b), (slices_a, slices_b) = compare_files(prints[a], prints[b])
            similarity = float(max(sim_a, sim_b))  # of the smaller answer: a copy padded out still shows
            if overlap and similarity >= threshold:
                pairs.append({"assignment": assignment, "cell": gid, "a": a, "b": b, "similarity": similarity,
                              "code_a": _marked(prints[a].raw_code, slices_a),
                              "code_b": _marked(prints[b].raw_code, slices_b)})
    pairs.sort(key=lambda p: (p["assignment"], p["cell"], -p["similarity"], p["a"], p["b"]))
    return pairs


def _marked(code, slices):
    text, _ = highlight_overlap(code, slices, "<mark>", "</mark>", escape_html=True)
    return text


def section(pairs, threshold):
    """The report's HTML for `pairs`: a table per cell and the two answers side by side."""
    e = html.escape
    if not pairs:
        return (f"<p>No pair of answers shares more than {threshold:.0%} of its fingerprints beyond the "
                "release's text and the reference's own code.</p>")
    parts = [f"<p>{len(pairs)} pair(s) of answers sharing at least {threshold:.0%} of their fingerprints "
             "(the release's text and the reference's code excluded). Read them side by side: a short "
             "answer or a standard idiom can match by chance; this is never a penalty.</p>"]
    for (assignment, cell), group in itertools.groupby(pairs, key=lambda p: (p["assignment"], p["cell"])):
        parts.append(f"<h3>{e(assignment)}: {e(cell)}</h3>")
        for p in group:
            parts.append(f"<details><summary>{e(p['a'])} and {e(p['b'])}: {p['similarity']:.0%}</summary>"
                         "<table class='pair'><tr>"
                         f"<th>{e(p['a'])}</th><th>{e(p['b'])}</th></tr><tr>"
                         f"<td><pre>{p['code_a']}</pre></td><td><pre>{p['code_b']}</pre></td></tr></table></details>")
    return "".join(parts)


def write(pairs, threshold, out):
    """similarity.html (the pairs side by side) and similarity.csv (one line per pair) in `out`."""
    import csv

    from .report import STYLE, _cell
    with open(out / "similarity.csv", "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["assignment", "cell", "student_a", "student_b", "similarity"])
        for p in pairs:
            writer.writerow(map(_cell, [p["assignment"], p["cell"], p["a"], p["b"], f"{p['similarity']:.3f}"]))
    (out / "similarity.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Answers that look alike</title>{STYLE}</head>"
        f"<body><h1>Answers that look alike</h1>{section(pairs, threshold)}</body></html>", encoding="utf-8")
