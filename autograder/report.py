"""What `grade` writes: grades.csv, scores.csv, feedback per student, and a report for the instructor."""
import csv
import html
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import numpy as np

SPREADSHEET_UNSAFE = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """A CSV field a spreadsheet will not run as a formula."""
    text = str(value)
    return "'" + text if text.startswith(SPREADSHEET_UNSAFE) and not _number(text) else text


def _number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


COLUMNS = ["student_id", "assignment", "score", "max_score", "status", "message", "submitted_at", "late_minutes"]


def _grade_row(r):
    return [r["student_id"], r["assignment"], r["score"], r["max_score"], r["status"], r["message"],
            r.get("submitted_at") or "", "" if r.get("late_minutes") is None else r["late_minutes"]]


def write(results, out, unmatched=(), pairs=None, threshold=None):
    """grades.csv, grades.xlsx, scores.csv, feedback/<student>/<assignment>.html and report.html."""
    out = Path(out)
    # utf-8-sig: Excel and LibreOffice open it with the right encoding as is
    with open(out / "grades.csv", "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for r in results:
            row = _grade_row(r)
            row[2:4] = f"{row[2]:g}", f"{row[3]:g}"
            writer.writerow(map(_cell, row))
    write_spreadsheet(results, out / "grades.xlsx")
    with open(out / "scores.csv", "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "assignment", "test", "score", "max_score"])
        for r in results:
            for t in r["tests"]:
                writer.writerow(map(_cell, [r["student_id"], r["assignment"], t["test"], f"{t['score']:g}",
                                            f"{t['max_score']:g}"]))
    for r in results:
        if r["status"] == "invalid_id":
            continue  # its name cannot be a folder of feedback either
        path = out / "feedback" / r["student_id"] / f"{r['assignment']}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(feedback_html(r), encoding="utf-8")
    write_instructor_report(results, out, unmatched, pairs, threshold)


def write_spreadsheet(results, path):
    """grades.csv as a spreadsheet whose text cells stay text: ids such as 00123, 1e5, TRUE or =A1
    are typed as text (a spreadsheet opening the CSV turns them into numbers, booleans or formulas)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "grades"
    sheet.append(COLUMNS)
    for r in results:
        sheet.append([None] * len(COLUMNS))
        for column, value in enumerate(_grade_row(r), start=1):
            cell = sheet.cell(row=sheet.max_row, column=column)
            cell.value = value if isinstance(value, (int, float)) else str(value)
            if isinstance(cell.value, str):
                cell.data_type, cell.number_format = "s", "@"  # text, never a formula
    sheet.freeze_panes = "A2"
    sheet.column_dimensions["A"].width = 24
    sheet.column_dimensions["F"].width = 60
    book.save(path)


STYLE = ("<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
         "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em .6em;"
         "text-align:left;vertical-align:top}pre{margin:0;white-space:pre-wrap}mark{background:#ffd54f}"
         ".pair td{width:50%}.ok td:first-child{color:#176f2c}.bad td:first-child{color:#a61b1b}"
         ".status{background:#fff4ce;padding:.5em}</style>")


def feedback_html(r):
    """Feedback built from results only: test names, points and error messages; no test source."""
    e = html.escape
    rows = "".join(
        f"<tr class='{'ok' if t['score'] >= t['max_score'] else 'bad'}'><td>{e(t['test'])}</td>"
        f"<td>{t['score']:g} / {t['max_score']:g}</td>"
        f"<td>{e(t['error'] or ('passed' if t['score'] >= t['max_score'] else 'partial credit'))}</td></tr>"
        for t in r["tests"])
    message = f"<p class='status'>{e(r['status'])}: {e(r['message'])}</p>" if r["message"] else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(r['assignment'])}: feedback</title>"
            f"{STYLE}</head><body><h1>{e(r['assignment'])}: {r['score']:g} / {r['max_score']:g}</h1>"
            f"<p>Student: {e(r['student_id'])}</p>{message}"
            f"<table><tr><th>test</th><th>points</th><th>result</th></tr>{rows}</table></body></html>")


def _exercise(test):
    return test[len("test_"):] if test.startswith("test_") else None


def bare(r):
    """A notebook handed in with no answer changed (0 points, status `graded`, all the same)."""
    unanswered = set(r.get("unanswered") or ())
    return bool(unanswered) and r["status"] in GRADED and all(_exercise(t["test"]) in unanswered for t in r["tests"])


GRADED = ("graded", "timeout", "crashed", "tampered")  # statuses in which the tests ran


def needs_a_look(r):
    """Why a human should look at this submission, or None."""
    reasons = []
    if r["status"] != "graded":
        reasons.append(r["status"])
    if bare(r):
        reasons.append("no answer changed (a bare release?)")
    if r.get("late_minutes"):
        reasons.append(f"late by {r['late_minutes']} min")
    if any("manual grade" in n or "missing" in n or "thread" in n for n in r.get("notes", [])):
        reasons.append("see message")
    return ", ".join(reasons) or None


def exercise_table(results):
    """{(assignment, test): {passed, ran, score, max, answered, failed_answered, errors: Counter}} over
    submissions whose tests ran, in assignment order and each notebook's own order of tests."""
    table = {}
    for r in sorted(results, key=lambda r: r["assignment"]):
        if r["status"] not in GRADED:
            continue
        unanswered = set(r.get("unanswered") or ())
        for t in r["tests"]:
            row = table.setdefault((r["assignment"], t["test"]), {
                "passed": 0, "ran": 0, "score": 0.0, "max": t["max_score"], "answered": 0, "failed_answered": 0,
                "errors": Counter()})
            full = t["score"] >= t["max_score"]
            row["passed"] += full
            row["ran"] += 1
            row["score"] += t["score"]
            if _exercise(t["test"]) not in unanswered:
                row["answered"] += 1
                if not full:
                    row["failed_answered"] += 1
                    row["errors"][(t["error"] or "partial credit")[:160]] += 1
    return table


def suspect_tests(table, share=0.5, at_least=3):
    """Tests that fail for most of the students who answered the exercise: a grader problem (an
    environment fault, a wrong test) is likelier than that many student mistakes."""
    return [(key, row) for key, row in table.items()
            if row["answered"] >= at_least and row["failed_answered"] > share * row["answered"]]


def _link(r):
    href = f"feedback/{quote(r['student_id'])}/{quote(r['assignment'])}.html"
    return f"<a href='{html.escape(href)}'>{html.escape(r['student_id'])}</a>"


def _figure(path, draw, height):
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(7, height))
    draw(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_instructor_report(results, out, unmatched=(), pairs=None, threshold=None):
    e = html.escape
    table = exercise_table(results)
    if table:
        def rates(fig):
            ax = fig.subplots()
            labels = [f"{a}: {t}" for a, t in table]
            ax.barh(labels[::-1], [row["passed"] / row["ran"] for row in table.values()][::-1], color="#4c72b0")
            ax.set_xlim(0, 1)
            ax.set_xlabel("fraction of submissions with full points")
            ax.set_title("Per exercise")
        _figure(out / "exercises.png", rates, 0.35 * len(table) + 1.2)
    assignments = sorted({r["assignment"] for r in results})
    scored = {a: [r["score"] for r in results if r["assignment"] == a and r["status"] in GRADED] for a in assignments}
    scored = {a: v for a, v in scored.items() if v}
    if scored:
        def histograms(fig):
            axes = fig.subplots(len(scored), 1, squeeze=False)[:, 0]
            for ax, (a, scores) in zip(axes, scored.items()):
                top = max(r["max_score"] for r in results if r["assignment"] == a)
                ax.hist(scores, bins=np.arange(0, top + 2) - 0.5, color="#4c72b0", edgecolor="white")
                ax.set_title(f"{a}: {len(scores)} graded", fontsize=10)
                ax.set_xlabel("points")
                ax.set_ylabel("submissions")
                ax.xaxis.get_major_locator().set_params(integer=True)
                ax.yaxis.get_major_locator().set_params(integer=True)
        _figure(out / "scores.png", histograms, 2.2 * len(scored) + 0.4)
    distribution = "".join(
        f"<tr><td>{e(a)}</td><td>{len(v)}</td><td>{np.mean(v):.1f}</td><td>{np.percentile(v, 25):g}</td>"
        f"<td>{np.median(v):g}</td><td>{np.percentile(v, 75):g}</td><td>{min(v):g} to {max(v):g}</td></tr>"
        for a, v in scored.items())

    def common(row):
        if not row["errors"]:
            return ""
        text, n = row["errors"].most_common(1)[0]
        return f"{e(text)} ({n})"
    rows = "".join(f"<tr><td>{e(a)}</td><td>{e(t)}</td><td>{row['passed']} / {row['ran']}</td>"
                   f"<td>{row['score'] / row['ran']:.2f} / {row['max']:g}</td><td>{common(row)}</td></tr>"
                   for (a, t), row in table.items())
    suspects = suspect_tests(table)
    suspect_rows = "".join(f"<tr><td>{e(a)}</td><td>{e(t)}</td><td>{row['failed_answered']} of {row['answered']}</td>"
                           f"<td>{common(row)}</td></tr>" for (a, t), row in suspects)
    look = [(r, needs_a_look(r)) for r in results]
    look_rows = "".join(f"<tr><td>{_link(r) if r['status'] != 'invalid_id' else e(repr(r['student_id']))}</td>"
                        f"<td>{e(r['assignment'])}</td><td>{e(why)}</td><td>{e(r['message'])}</td></tr>"
                        for r, why in look if why)
    counts = Counter(r["status"] for r in results)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    students = len({r["student_id"] for r in results})
    loose = ("<h2>Files that name no student (not graded)</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in unmatched)
             + "</ul>") if unmatched else ""
    similar = ""
    if pairs is not None:
        from .similarity import section
        similar = f"<h2>Answers that look alike ({len(pairs)} pairs)</h2>{section(pairs, threshold)}"
    (out / "report.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grading report</title>{STYLE}</head><body>"
        f"<h1>Grading report</h1><p>{len(results)} rows ({students} students x {len(assignments)} assignment(s)): "
        f"{e(summary)}</p>{loose}"
        f"<h2>Tests to check ({len(suspects)})</h2><p>Tests that fail for more than half of the submissions that "
        "answered the exercise: an environment fault or a wrong test is likelier than that many mistakes.</p>"
        f"<table><tr><th>assignment</th><th>test</th><th>failed</th><th>most common message (count)</th></tr>"
        f"{suspect_rows}</table>"
        f"<h2>Needs a human look ({sum(1 for _, why in look if why)})</h2>"
        f"<table><tr><th>student (feedback)</th><th>assignment</th><th>why</th><th>message</th></tr>{look_rows}</table>"
        f"<h2>Scores</h2>" + ("<img src='scores.png' alt='score distribution per assignment'>" if scored else "")
        + "<table><tr><th>assignment</th><th>graded</th><th>mean</th><th>25 %</th><th>median</th><th>75 %</th>"
        f"<th>range</th></tr>{distribution}</table>"
        f"<h2>Per exercise</h2>" + ("<img src='exercises.png' alt='pass rate per exercise'>" if table else "")
        + "<table><tr><th>assignment</th><th>test</th><th>full points</th><th>mean score</th>"
        f"<th>most common message (count)</th></tr>{rows}</table>{similar}"
        "</body></html>", encoding="utf-8")


def print_table(results, stream=None):
    import sys
    stream = stream or sys.stdout
    width = max([len(r["student_id"]) for r in results] + [7])
    print(f"{'student':<{width}}  {'assignment':<14} {'score':>11}  status", file=stream)
    for r in results:
        score = f"{r['score']:g}/{r['max_score']:g}"
        print(f"{r['student_id']:<{width}}  {r['assignment']:<14} {score:>11}  {r['status']}"
              + (f"  ({r['message'][:80]})" if r["message"] else ""), file=stream)
