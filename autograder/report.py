"""What `grade` writes: grades.csv, scores.csv, feedback per student, and a report for the instructor."""
import csv
import html
from pathlib import Path

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


def write(results, out):
    out = Path(out)
    # utf-8-sig: Excel and LibreOffice open it with the right encoding as is
    with open(out / "grades.csv", "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "assignment", "score", "max_score", "status", "message",
                         "submitted_at", "late_minutes"])
        for r in results:
            writer.writerow(map(_cell, [r["student_id"], r["assignment"], f"{r['score']:g}", f"{r['max_score']:g}",
                                        r["status"], r["message"], r.get("submitted_at") or "",
                                        "" if r.get("late_minutes") is None else r["late_minutes"]]))
    with open(out / "scores.csv", "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "assignment", "test", "score", "max_score"])
        for r in results:
            for t in r["tests"]:
                writer.writerow(map(_cell, [r["student_id"], r["assignment"], t["test"], f"{t['score']:g}",
                                            f"{t['max_score']:g}"]))
    for r in results:
        path = out / "feedback" / r["student_id"] / f"{r['assignment']}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(feedback_html(r), encoding="utf-8")
    write_instructor_report(results, out)


STYLE = ("<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
         "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em .6em;"
         "text-align:left;vertical-align:top}.ok td:first-child{color:#176f2c}.bad td:first-child{color:#a61b1b}"
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


def needs_a_look(r):
    """Why a human should look at this submission, or None."""
    reasons = []
    if r["status"] != "graded":
        reasons.append(r["status"])
    if r.get("late_minutes"):
        reasons.append(f"late by {r['late_minutes']} min")
    if any("manual grade" in n or "missing" in n or "thread" in n for n in r.get("notes", [])):
        reasons.append("see message")
    return ", ".join(reasons) or None


def exercise_table(results):
    """{(assignment, test): [passed, graded, total score, max]} over submissions that ran."""
    table = {}
    for r in results:
        if r["status"] in ("missing", "invalid_notebook"):
            continue
        for t in r["tests"]:
            row = table.setdefault((r["assignment"], t["test"]), [0, 0, 0.0, t["max_score"]])
            row[0] += t["score"] >= t["max_score"]
            row[1] += 1
            row[2] += t["score"]
    return table


def write_instructor_report(results, out):
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    e = html.escape
    table = exercise_table(results)
    if table:
        labels = [f"{a}: {t}" for a, t in table]
        rates = [row[0] / row[1] for row in table.values()]
        fig = Figure(figsize=(7, 0.35 * len(labels) + 1.2))
        ax = fig.subplots()
        ax.barh(labels[::-1], rates[::-1], color="#4c72b0")
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of submissions with full points")
        ax.set_title("Per exercise")
        fig.tight_layout()
        fig.savefig(out / "exercises.png", dpi=100)
    rows = "".join(f"<tr><td>{e(a)}</td><td>{e(t)}</td><td>{p} / {n}</td><td>{s / n:.2f} / {m:g}</td></tr>"
                   for (a, t), (p, n, s, m) in table.items())
    look = [(r, needs_a_look(r)) for r in results]
    look_rows = "".join(f"<tr><td>{e(r['student_id'])}</td><td>{e(r['assignment'])}</td><td>{e(why)}</td>"
                        f"<td>{e(r['message'])}</td></tr>" for r, why in look if why)
    counts = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    (out / "report.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grading report</title>{STYLE}</head><body>"
        f"<h1>Grading report</h1><p>{len(results)} submissions: {e(summary)}</p>"
        f"<h2>Per exercise</h2><img src='exercises.png' alt='pass rate per exercise'>"
        f"<table><tr><th>assignment</th><th>test</th><th>full points</th><th>mean score</th></tr>{rows}</table>"
        f"<h2>Needs a human look ({sum(1 for _, why in look if why)})</h2>"
        f"<table><tr><th>student</th><th>assignment</th><th>why</th><th>message</th></tr>{look_rows}</table>"
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
