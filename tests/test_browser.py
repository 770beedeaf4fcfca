"""The course in a real browser: Chromium drives JupyterLab serving a freshly built student release.

One JupyterLab server (fast profile) serves the release with the reference answers filled in; for
every notebook the test opens it, waits for an idle kernel, clicks Run > Run All Cells and checks
what a student sees: no error output, figures rendered as images, LaTeX typeset by MathJax, every
ipywidgets control rendered (labels not cut off; a control of a kind the test does not know fails it)
and, when moved (a slider, selection slider included, by keyboard, a dropdown by selection, a checkbox by
a click, a text or number box by typing), changing the output it drives; no progress bar ends in tqdm's
error style (red: a loop that stopped before its total). Run All on the bare release of
01_backprop stops at the first test, which names the unanswered exercise (its NotImplementedError)
without a traceback into the harness; a wrong answer then shows the visible test's message. The
student's JupyterLab has no nbgrader instructor tools; an instructor's has them. Screenshots land in
browser-screenshots/ (or $BROWSER_SCREENSHOTS) with summary.json: wall and CPU seconds per notebook
(kernel, server, Chromium), what was checked and moved, the progress bars that ended red, stderr seen.

Needs Chromium (Debian's package) and Playwright for Python: when Chromium is missing the test
installs it with apt-get where it runs as root, and skips with the reason otherwise.
"""
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from autograder import course, notebooks
from conftest import BIN, REPO

ASSIGNMENTS = course.assignments()
BARE = "01_backprop"
TOKEN = "browser-test-token"
SHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS") or REPO / "browser-screenshots")
RUN_TIMEOUT = float(os.environ.get("BROWSER_NOTEBOOK_TIMEOUT", 480))  # seconds per Run All
WIDGET_TIMEOUT = float(os.environ.get("BROWSER_WIDGET_TIMEOUT", 120))  # seconds per control move
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
MATH = re.compile(r"\$[^$\n]+\$|\$\$|\\\(|\\\[|\\begin\{")
STUDENT_CONFIG = "jupyter-config"  # shipped in the release by `autograder release`
SUMMARY = {}


# ---------------------------------------------------------------- Chromium: find, install, or skip
def _find_chromium():
    """$CHROMIUM when set (a path or a command), else Debian's chromium or a Chrome on PATH."""
    names = [os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else [
        "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


def _install_chromium():
    """apt-get install chromium where that is allowed (root, apt-get present); returns why not, or None."""
    if os.environ.get("BROWSER_NO_INSTALL"):
        return "BROWSER_NO_INSTALL is set"
    if not shutil.which("apt-get"):
        return "no apt-get on this machine (install Chromium and set CHROMIUM=/path/to/it)"
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install it (run `sudo apt-get install chromium`)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("\nChromium is missing: apt-get install -y chromium ...", file=sys.stderr, flush=True)
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    try:
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get failed: {exc}"
    if done.returncode != 0:
        return f"apt-get install chromium failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def chromium():
    path = _find_chromium()
    if path is None:
        why = _install_chromium()
        path = _find_chromium()
        if path is None:
            pytest.skip(f"browser test skipped: Chromium not found and not installed ({why or 'apt-get did not provide it'})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"browser test skipped: Playwright for Python is not installed ({exc}); run `make setup`")
    return path


# ---------------------------------------------------------------- the student bundle and the servers
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """`autograder release` into a temporary course root (the checkout's release/ stays untouched),
    then the reference answers filled into each released notebook; the bare 01_backprop beside."""
    from autograder import cli

    started, cpu = time.monotonic(), _cpu_seconds()
    SUMMARY["cpu_at_start"], SUMMARY["started_at"] = cpu, started
    root = tmp_path_factory.mktemp("browser-course")
    for name in ("notebooks", "autograder", "requirements.lock"):
        if (REPO / name).exists():
            (root / name).symlink_to(REPO / name)
    shutil.copy(REPO / "nbgrader_config.py", root)
    old = os.environ.get("COURSE_ROOT")
    os.environ["COURSE_ROOT"] = str(root)
    try:
        with contextlib.chdir(root), contextlib.redirect_stdout(sys.stderr):  # gradebook.db lands in root
            assert cli.main(["release", *ASSIGNMENTS]) == 0
    finally:
        os.environ.pop("COURSE_ROOT") if old is None else os.environ.__setitem__("COURSE_ROOT", old)
    release = root / "release"
    bare = notebooks.read(release / BARE / f"{BARE}.ipynb")
    (release / "bare").mkdir()
    nbformat.write(bare, str(release / "bare" / f"{BARE}.ipynb"))
    for assignment in ASSIGNMENTS:
        path = release / assignment / f"{assignment}.ipynb"
        source = notebooks.read(course.source_notebook(assignment))
        nbformat.write(notebooks.fill(notebooks.read(path), notebooks.answers(source)), str(path))
    SUMMARY["release"] = {"wall_s": round(time.monotonic() - started, 1), "cpu_s": round(_cpu_seconds() - cpu, 1)}
    return release


def _cpu_by_role():
    """CPU seconds (user + system) of this process and everything under it, by role: the kernels,
    the JupyterLab servers, Chromium, Playwright's driver and pytest itself (a finished child counts
    in its parent's)."""
    import psutil

    me = psutil.Process()
    roles = {"kernel": 0.0, "server": 0.0, "chromium": 0.0, "driver": 0.0, "pytest": 0.0}
    for proc in [me, *me.children(recursive=True)]:
        try:
            line = " ".join(proc.cmdline())
            t = proc.cpu_times()
        except psutil.Error:
            continue
        role = ("pytest" if proc.pid == me.pid else "kernel" if "ipykernel" in line else
                "server" if "jupyter" in line else "chromium" if "chrom" in line else "driver")
        roles[role] += t.user + t.system + t.children_user + t.children_system
    return roles


def _cpu_seconds(kernels_only=False):
    roles = _cpu_by_role()
    return roles["kernel"] if kernels_only else sum(roles.values())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user_settings(folder):
    settings = {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        # every cell attached to the page: the default windowing leaves cells of long notebooks out
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    }
    for plugin, values in settings.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@contextlib.contextmanager
def _jupyterlab(root, home, student):
    """JupyterLab on `root` with its own config, runtime, settings and workspace folders. A student's
    server reads the config the release ships (as installed in a student's environment); an
    instructor's does not."""
    for sub in ("cfg", "data", "rt", "ipython", "mpl", "ws"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    _user_settings(home / "settings")
    port = _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COURSE_PROFILE": "fast",
           "OMP_NUM_THREADS": "1", "JUPYTER_CONFIG_DIR": str(home / "cfg"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "rt"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "ws"), "IPYTHONDIR": str(home / "ipython"),
           "MPLCONFIGDIR": str(home / "mpl"), "PYTHONUNBUFFERED": "1",
           # progress bars redraw once a second, not ten times: each redraw re-lays out the page
           "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "1")}
    env.pop("JUPYTER_CONFIG_PATH", None)
    if student:
        env["JUPYTER_CONFIG_PATH"] = str(root / STUDENT_CONFIG)
    log = open(home / "jupyterlab.log", "w")
    lab = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
         f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None",
         "--LabApp.expose_app_in_browser=True", *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if lab.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"JupyterLab did not start: {(home / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield base
    finally:
        lab.send_signal(signal.SIGTERM)
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait()
        log.close()


@pytest.fixture(scope="module")
def playwright(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@contextlib.contextmanager
def _browser(playwright, chromium, profile):
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="module")
def student_lab(chromium, playwright, bundle, tmp_path_factory):
    home = tmp_path_factory.mktemp("student-lab")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in [*SHOTS.glob("*.jpg"), SHOTS / "summary.json"]:
        old.unlink(missing_ok=True)
    started, cpu = time.monotonic(), _cpu_seconds()
    with _jupyterlab(bundle, home, student=True) as base, _browser(playwright, chromium, home / "chromium") as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        _open_lab(page, base)
        SUMMARY["lab_ready"] = {"wall_s": round(time.monotonic() - started, 1), "cpu_s": round(_cpu_seconds() - cpu, 1)}
        yield base, page
        # before the browser closes: Chromium's helpers are not reaped by a process this one waits for
        SUMMARY["module"] = {"wall_s": round(time.monotonic() - SUMMARY.pop("started_at"), 1),
                             "cpu_s": round(_cpu_seconds() - SUMMARY.pop("cpu_at_start"), 1)}
    (SHOTS / "summary.json").write_text(json.dumps(SUMMARY, indent=1))
    print(f"\nbrowser test: {json.dumps(SUMMARY)}", file=sys.stderr)


def _open_lab(page, base):
    page.goto(f"{base}/lab?reset&token={TOKEN}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined", polling=250)
    page.evaluate("() => window.jupyterapp.restored")
    page.wait_for_selector("#jp-main-statusbar")
    page.wait_for_selector("#jp-menu-panel .lm-MenuBar-item")
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the notebooks get the width


# ---------------------------------------------------------------- in-page helpers (JupyterLab's own objects)
OPEN = """async (path) => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  window.__panel = panel;
  return panel.id;
}"""

STATE = """() => {
  const panel = window.__panel;
  const cells = panel.content.widgets.map((cw, i) => {
    const m = cw.model;
    const r = {i, type: m.type, source: m.sharedModel.getSource()};
    if (m.type === 'code') {
      r.prompt = (cw.node.querySelector('.jp-InputArea-prompt') || {}).textContent || '';
      r.exec = m.executionCount;
      r.outputs = [];
      for (let k = 0; k < m.outputs.length; k++) {
        const o = m.outputs.get(k).toJSON();
        r.outputs.push({type: o.output_type, mimes: Object.keys(o.data || {}), ename: o.ename, evalue: o.evalue,
                        traceback: o.traceback, name: o.name, text: o.text || (o.data || {})['text/plain'] || ''});
      }
    }
    return r;
  });
  const k = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {cells, kernel: k ? k.status : null, domCells: panel.content.node.querySelectorAll('.jp-Cell').length};
}"""

# Run All has finished (or stopped at a failing cell) once a cell has run, the kernel is idle and no
# cell is queued ([*]); a cell that fails clears the queue after it.
RUN_DONE = """() => {
  const panel = window.__panel;
  const k = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!k || k.status !== 'idle') return false;
  let ran = 0;
  for (const cw of panel.content.widgets) {
    if (cw.model.type !== 'code') continue;
    const prompt = (cw.node.querySelector('.jp-InputArea-prompt') || {}).textContent || '';
    if (prompt.includes('*')) return false;
    if (cw.model.executionCount !== null) ran += 1;
  }
  return ran > 0;
}"""

# Per cell, what the page shows: images (loaded?), typeset math, widgets and their controls.
RENDERED = """() => {
  const panel = window.__panel;
  return panel.content.widgets.map((cw, i) => {
    const r = {i};
    if (cw.model.type === 'markdown') {
      const md = cw.node.querySelector('.jp-RenderedMarkdown');
      r.rendered = !!md;
      r.math = md ? md.querySelectorAll('mjx-container').length : 0;
      r.mathErrors = md ? Array.from(md.querySelectorAll('mjx-merror, [data-mjx-error]')).map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 3) : [];
      return r;
    }
    if (cw.model.type !== 'code') return r;
    r.children = Array.from(cw.outputArea.widgets).map(child => {
      const n = child.node;
      const imgs = Array.from(n.querySelectorAll('.jp-RenderedImage img, .jp-RenderedSVG svg'));
      return {
        images: imgs.length,
        loaded: imgs.filter(img => img.tagName.toLowerCase() === 'svg' || (img.complete && img.naturalWidth > 0)).length,
        latex: n.querySelectorAll('.jp-RenderedLatex mjx-container, .jp-RenderedMarkdown mjx-container').length,
        widgets: n.querySelectorAll('.jupyter-widgets').length,
        // a widget closed by its code (a tqdm bar with leave=False) hides its output: not an error
        closed: !!n.querySelector(':scope > .jp-OutputArea-output.lm-mod-hidden'),
        widgetErrors: /^(Error displaying widget|Loading widget)/.test(
          ((n.querySelector(':scope > .jp-OutputArea-output') || {}).textContent || '').trim()),
        traceback: Array.from(n.querySelectorAll('.widget-output .jp-RenderedText')).map(t => t.textContent).filter(t => t.includes('Traceback (most recent call last)')).slice(0, 1),
      };
    });
    const controls = [];
    // every widget view that is not a container, an output, a progress bar or static text is a control;
    // selected by its own class (a SelectionSlider's element is no '.jupyter-widgets')
    const passive = ['widget-box', 'widget-hbox', 'widget-vbox', 'widget-gridbox', 'widget-output', 'widget-hprogress',
                     'widget-vprogress', 'widget-label', 'widget-html', 'widget-htmlmath', 'widget-image'];
    cw.node.querySelectorAll('.jp-Cell-outputArea .widget-inline-hbox, .jp-Cell-outputArea .widget-inline-vbox, ' +
                             '.jp-Cell-outputArea .widget-slider, .jp-Cell-outputArea .widget-dropdown, ' +
                             '.jp-Cell-outputArea .widget-checkbox, .jp-Cell-outputArea .widget-text, ' +
                             '.jp-Cell-outputArea .widget-textarea').forEach(w => {
      const cls = w.classList;
      let kind = null;
      if (cls.contains('widget-slider') && w.querySelector('.noUi-handle')) kind = 'slider';
      else if (cls.contains('widget-dropdown') && w.querySelector('select')) kind = 'dropdown';
      else if (cls.contains('widget-checkbox') && w.querySelector('input[type=checkbox]')) kind = 'checkbox';
      else if ((cls.contains('widget-text') || cls.contains('widget-textarea')) && w.querySelector('input, textarea')) kind = 'text';
      else if (passive.some(c => cls.contains(c))) return;
      else kind = 'unknown: ' + Array.from(cls).filter(c => c.startsWith('widget-')).join(' ');
      const label = w.querySelector(':scope > .widget-label');
      const box = w.getBoundingClientRect();
      controls.push({kind, label: label ? label.textContent : '',
                     cut: !!(label && label.textContent && label.scrollWidth > label.clientWidth + 1),
                     visible: box.width > 0 && box.height > 0});
    });
    r.controls = controls;
    // tqdm's notebook bar ends red (bar_style 'danger') when its loop stopped before the total
    r.redBars = Array.from(cw.node.querySelectorAll('.jp-Cell-outputArea .widget-hprogress')).filter(
      p => p.querySelector('.progress-bar-danger')).map(p => p.textContent.trim().slice(0, 80));
    return r;
  });
}"""

# A fingerprint of everything a cell's widgets display (texts and images), without the controls.
SIGNATURE = """(i) => {
  const cw = window.__panel.content.widgets[i];
  let outs = Array.from(cw.node.querySelectorAll('.jp-Cell-outputArea .widget-output'));
  if (!outs.length) outs = [cw.node.querySelector('.jp-Cell-outputArea')];
  let s = '';
  for (const o of outs) {
    s += o.textContent + '|';
    for (const img of o.querySelectorAll('img')) s += img.src + '|';
  }
  let h = 0;
  for (let j = 0; j < s.length; j++) h = (Math.imul(31, h) + s.charCodeAt(j)) | 0;
  return s.length + ':' + h;
}"""

IDLE = """() => { const k = window.__panel.sessionContext.session && window.__panel.sessionContext.session.kernel;
                  return !!k && k.status === 'idle'; }"""

CLOSE = """async () => {
  const panel = window.__panel;
  if (!panel) return;
  await panel.sessionContext.shutdown();
  panel.context.model.dirty = false;
  panel.dispose();
  window.__panel = null;
}"""


def _open_notebook(page, path):
    page.evaluate(OPEN, path)
    # the status bar says "Python 3 (ipykernel) | Idle" once the kernel has started
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('#jp-main-statusbar .jp-StatusBar-TextItem'))
                    .some(e => /\\|\\s*Idle/.test(e.textContent))""", timeout=120_000, polling=250)
    page.wait_for_function(IDLE, timeout=120_000, polling=250)


def _run_all(page):
    page.locator("#jp-menu-panel .lm-MenuBar-item", has_text="Run").first.click()
    page.locator('#jp-mainmenu-run .lm-Menu-item[data-command="runmenu:run-all"]').click()
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:  # done twice in a row, a second apart (the kernel is idle for a moment between cells)
        page.wait_for_function(RUN_DONE, timeout=max(1.0, deadline - time.monotonic()) * 1000, polling=500)
        page.wait_for_timeout(1000)
        if page.evaluate(RUN_DONE):
            return


def _cell(page, index):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


def _plain(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _errors(state):
    found = []
    for cell in state["cells"]:
        for out in cell.get("outputs", []):
            if out["type"] == "error":
                tb = _plain("\n".join(out.get("traceback") or []))
                found.append(f"cell {cell['i']} ({cell['source'].strip().splitlines()[0][:60]!r}): "
                             f"{out['ename']}: {out['evalue']}\n{tb[-1500:]}")
    return found


def _screenshot(page, name):
    """The whole notebook: a viewport as tall as its content (in pieces past 16,000 pixels)."""
    scroller = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
    height = page.evaluate(f"() => (document.querySelector('{scroller}') || {{scrollHeight: 1000}}).scrollHeight")
    size = page.viewport_size
    try:
        chunk, top, part = 15000, 0, 1
        while True:
            page.set_viewport_size({"width": size["width"], "height": min(chunk, height) + 150})
            page.evaluate(f"(t) => {{ const s = document.querySelector('{scroller}'); if (s) s.scrollTop = t; }}", top)
            page.wait_for_timeout(300)
            page.screenshot(path=str(SHOTS / (f"{name}.jpg" if height <= chunk else f"{name}-{part}.jpg")),
                            type="jpeg", quality=80)
            top, part = top + chunk, part + 1
            if top >= height:
                break
    finally:
        page.set_viewport_size(size)


def _wait_for_change(page, index, before, what):
    try:
        page.wait_for_function(f"([i, b]) => ({SIGNATURE})(i) !== b && ({IDLE})()", arg=[index, before],
                               timeout=WIDGET_TIMEOUT * 1000, polling=250)
    except Exception as exc:
        raise AssertionError(f"cell {index}: moving {what} did not change the output it drives "
                             f"within {WIDGET_TIMEOUT:.0f} s") from exc
    # settle: the kernel stays idle and the output stops changing
    page.wait_for_timeout(300)
    page.wait_for_function(IDLE, timeout=WIDGET_TIMEOUT * 1000, polling=250)


def _move_controls(page, index):
    """Move each slider (keyboard), dropdown (selection), checkbox (click) and text or number box (typing) of a
    cell once; the cell's widget output must change each time. Returns what was moved."""
    cell = _cell(page, index)
    moved = []
    for kind, selector in (("slider", ".widget-slider"), ("dropdown", ".widget-dropdown"),
                           ("checkbox", ".widget-checkbox"), ("text", ".widget-text, .widget-textarea")):
        controls = cell.locator(f".jp-Cell-outputArea {selector}")
        for k in range(controls.count()):
            control = controls.nth(k)
            label = control.locator(".widget-label-basic" if kind == "checkbox" else ".widget-label").first
            label = ((label.text_content() if label.count() else "") or "").strip("\u200b ")
            what = f"{kind} {label!r}"
            control.scroll_into_view_if_needed()
            before = page.evaluate(SIGNATURE, index)
            if kind == "slider":
                readout = control.locator(".widget-readout").first
                old = readout.text_content() if readout.count() else None
                handle = control.locator(".noUi-handle").first
                handle.focus()
                handle.press("ArrowRight")
                page.wait_for_timeout(100)
                if readout.count() and readout.text_content() == old:  # at its maximum
                    handle.press("ArrowLeft")
                value = readout.text_content() if readout.count() else "?"
                what += f" {old} -> {value}"
            elif kind == "dropdown":
                select = control.locator("select").first
                options = select.locator("option").all_text_contents()
                current = select.evaluate("s => s.selectedIndex")
                assert len(options) > 1, f"cell {index}: {what} has a single option"
                select.select_option(index=(current + 1) % len(options))
                what += f" {options[current]!r} -> {options[(current + 1) % len(options)]!r}"
            elif kind == "checkbox":
                control.locator("input[type=checkbox]").first.click()
            else:  # a number box gets its value + 1, a text box one more letter; Enter submits
                box = control.locator("input, textarea").first
                old = box.input_value()
                new = (str(float(old or 0) + 1).removesuffix(".0") if box.get_attribute("type") == "number" else old + "a")
                box.fill(new)
                box.press("Enter")
                what += f" {old!r} -> {new!r}"
            _wait_for_change(page, index, before, what)
            moved.append(what)
    return moved


def _check_rendered(page, state, name):
    """Figures as images, LaTeX typeset, widgets rendered with readable labels. Returns counts."""
    deadline = time.monotonic() + 60
    while True:  # images decode and MathJax typesets asynchronously
        rendered = page.evaluate(RENDERED)
        problems, counts = [], {"images": 0, "math_cells": 0, "latex_outputs": 0, "widget_outputs": 0, "controls": 0,
                                "red_progress_bars": 0}
        for cell, view in zip(state["cells"], rendered):
            where = f"{name} cell {cell['i']}"
            if cell["type"] == "markdown" and MATH.search(cell["source"]):
                counts["math_cells"] += 1
                if not view.get("math"):
                    problems.append(f"{where}: LaTeX not rendered by MathJax ({cell['source'][:60]!r})")
                if view.get("mathErrors"):
                    problems.append(f"{where}: MathJax errors {view['mathErrors']}")
            if cell["type"] != "code":
                continue
            children = view.get("children", [])
            if len(children) != len(cell["outputs"]):
                problems.append(f"{where}: {len(cell['outputs'])} outputs but {len(children)} shown")
                continue
            for out, child in zip(cell["outputs"], children):
                if any(m.startswith("image/") for m in out["mimes"]):
                    counts["images"] += 1
                    if not child["images"] or child["loaded"] < child["images"]:
                        problems.append(f"{where}: a figure did not render as an image")
                elif "text/latex" in out["mimes"]:
                    counts["latex_outputs"] += 1
                    if not child["latex"]:
                        problems.append(f"{where}: a LaTeX output was not typeset")
                if "application/vnd.jupyter.widget-view+json" in out["mimes"]:
                    counts["widget_outputs"] += 1
                    if child["widgetErrors"] or not (child["widgets"] or child["closed"]):
                        problems.append(f"{where}: a widget did not render")
                if child["traceback"]:
                    problems.append(f"{where}: a widget's output shows an error: {child['traceback'][0][-600:]}")
                if out["type"] in ("display_data", "execute_result") and not any(
                        m.startswith("image/") for m in out["mimes"]) and re.match(
                        r"<Figure size [^>]* with \d+ Axes>", str(out["text"]) if isinstance(out["text"], str)
                        else "".join(out["text"])):
                    problems.append(f"{where}: a figure was printed as text instead of drawn")
            counts["red_progress_bars"] += len(view.get("redBars", []))
            for control in view.get("controls", []):
                counts["controls"] += 1
                if control["kind"].startswith("unknown"):
                    problems.append(f"{where}: a control the test cannot move ({control['kind']}, {control['label']!r})")
                if not control["visible"]:
                    problems.append(f"{where}: {control['kind']} {control['label']!r} is not visible")
                if control["cut"]:
                    problems.append(f"{where}: the description of {control['kind']} {control['label']!r} is cut off")
        if not problems or time.monotonic() > deadline:
            return problems, counts
        page.wait_for_timeout(500)


# ---------------------------------------------------------------- the tests
def test_student_lab_hides_instructor_tools(student_lab):
    base, page = student_lab
    status = _http_status(f"{base}/formgrader?token={TOKEN}")
    assert status == 404, f"the student's server answers /formgrader with {status}: formgrader is enabled"
    assert page.locator("#nbgrader-create_assignemnt").count() == 0, "the Create Assignment panel is there"
    assert page.locator(".jp-SideBar .lm-TabBar-tab", has_text="Create Assignment").count() == 0
    labels = _nbgrader_menu(page)
    assert "Assignment List" in labels, f"the student's Nbgrader menu lacks the assignment list: {labels}"
    assert not [label for label in labels if "Formgrader" in label or "Create" in label or "Course" in label], labels
    _open_notebook(page, f"{BARE}/{BARE}.ipynb")
    try:
        toolbar = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar")
        assert toolbar.get_by_text("Validate").count() >= 1, "the student's notebook has no Validate button"
    finally:
        page.evaluate(CLOSE)


def test_instructor_lab_has_nbgrader_tools(student_lab, bundle, tmp_path_factory):
    """The same release served by an instructor's JupyterLab (without the student config): nbgrader's
    instructor tools are all there. A second, short-lived server, in a new tab of the same browser."""
    home = tmp_path_factory.mktemp("instructor-lab")
    started, cpu = time.monotonic(), _cpu_seconds()
    with _jupyterlab(bundle, home, student=False) as base, _new_page(student_lab[1].context) as page:
        _open_lab(page, base)
        assert _http_status(f"{base}/formgrader?token={TOKEN}") in (200, 302)
        page.wait_for_selector("#nbgrader-create_assignemnt", state="attached")
        labels = _nbgrader_menu(page)
        for wanted in ("Assignment List", "Formgrader", "Create assignment"):
            assert any(wanted.lower() in label.lower() for label in labels), f"{wanted!r} not in {labels}"
        page.screenshot(path=str(SHOTS / "instructor-lab.jpg"), type="jpeg", quality=80)
    SUMMARY["instructor_lab"] = {"wall_s": round(time.monotonic() - started, 1), "cpu_s": round(_cpu_seconds() - cpu, 1)}


@contextlib.contextmanager
def _new_page(context):
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        page.close()


def _http_status(url):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    try:
        return urllib.request.build_opener(NoRedirect).open(url, timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code


def _nbgrader_menu(page):
    item = page.locator("#jp-menu-panel .lm-MenuBar-item", has_text="Nbgrader")
    if item.count() == 0:
        return []
    item.first.click()
    menu = page.locator("#jp-mainmenu-nbgrader")
    menu.wait_for()
    labels = [t.strip() for t in menu.locator(".lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel").all_text_contents()]
    page.keyboard.press("Escape")
    return [label for label in labels if label]


def test_bare_release_shows_the_exercise_to_do(student_lab):
    """Run All on the bare release stops at the first visible test, which tells the student that the
    exercise above is not answered (its NotImplementedError, in the student's own cells): no traceback
    into the harness. Then a wrong answer: the visible test's teaching message."""
    base, page = student_lab
    started, cpu = time.monotonic(), _cpu_seconds()
    source = notebooks.read(course.source_notebook(BARE))
    tests = [i for i, c in enumerate(source.cells) if notebooks.is_test(c)]
    answer = next(i for i, c in enumerate(source.cells) if notebooks.is_answer(c))
    name = notebooks.grade_id(source.cells[answer])
    _open_notebook(page, f"bare/{BARE}.ipynb")
    try:
        _run_all(page)
        state = page.evaluate(STATE)
        ran = [c["i"] for c in state["cells"] if c["type"] == "code" and c["exec"] is not None]
        assert ran and ran[-1] == tests[0], f"Run All should stop at the first test (cell {tests[0]}), ran {ran}"
        assert not _errors(state)[1:], "more than one cell failed:\n" + "\n\n".join(_errors(state))
        failed = state["cells"][tests[0]]
        for out in failed["outputs"]:
            if out["type"] == "error":
                assert out["ename"] == "NotImplementedError", _errors(state)
        # the line to act on is the cell's error (JupyterLab's red box), one line, no traceback
        boxed = [_plain("".join(o["traceback"] or [])) for o in failed["outputs"] if o["type"] == "error"]
        assert len(boxed) == 1 and name in boxed[0] and "\n" not in boxed[0].strip(), \
            f"the unanswered exercise should be the cell's one-line error, got {failed['outputs']}"
        shown = _cell(page, tests[0]).locator(".jp-Cell-outputArea").text_content()
        assert "NotImplementedError" in shown or "not answered" in shown, f"the student sees:\n{shown}"
        assert name in shown, f"what the student sees does not name the exercise {name!r}:\n{shown}"
        harness = re.findall(r"File [^\n]*", shown)
        assert not harness, f"the student sees a traceback into the harness: {harness}"
        # A wrong answer (the bias forgotten): the visible test's message, where the student looks.
        assert name == "linear_forward", f"{BARE}'s first exercise is now {name}: update the wrong answer here"
        page.evaluate("""([i, code]) => window.__panel.content.widgets[i].model.sharedModel.setSource(code)""",
                      [answer, "def linear_forward(x, W, b):\n    return x @ W, (x, W, b)\n"])
        for i in (answer, tests[0]):
            page.evaluate("(i) => { window.__panel.content.activeCellIndex = i; }", i)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
            page.wait_for_function(f"(i) => window.__panel.content.widgets[i].model.executionCount !== null && "
                                   f"!window.__panel.content.widgets[i].node.querySelector('.jp-InputArea-prompt').textContent.includes('*') && ({IDLE})()",
                                   arg=i, timeout=60_000, polling=250)
        page.wait_for_timeout(300)
        state = page.evaluate(STATE)
        errors = [o for o in state["cells"][tests[0]]["outputs"] if o["type"] == "error"]
        assert errors and errors[0]["ename"] == "AssertionError" and errors[0]["evalue"], _errors(state)
        shown = _cell(page, tests[0]).locator(".jp-Cell-outputArea").text_content()
        assert errors[0]["evalue"] in shown, f"the visible test's message is not shown:\n{shown}"
        frames = re.findall(r"File (\S+?)(?::\d+)?,? ", shown)
        assert not [f for f in frames if "/autograder/" in f], f"the traceback goes into the autograder: {frames}"
        SUMMARY["bare_" + BARE] = {"wall_s": round(time.monotonic() - started, 1), "cpu_s": round(_cpu_seconds() - cpu, 1),
                                   "wrong_answer_frames_outside_the_notebook": frames}
        _screenshot(page, f"bare-{BARE}")
    finally:
        page.evaluate(CLOSE)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_notebook_in_the_browser(student_lab, assignment):
    base, page = student_lab
    phases, clock = {}, [time.monotonic(), _cpu_by_role()]

    def phase(name):
        now = [time.monotonic(), _cpu_by_role()]
        phases[name] = {"wall_s": round(now[0] - clock[0], 1),
                        "cpu_s": round(sum(now[1].values()) - sum(clock[1].values()), 1),
                        **{role: round(now[1][role] - clock[1][role], 1) for role in now[1]}}
        clock[:] = now

    _open_notebook(page, f"{assignment}/{assignment}.ipynb")
    phase("open")
    try:
        _run_all(page)
        kernel_cpu = _cpu_seconds(kernels_only=True)
        phase("run_all")
        state = page.evaluate(STATE)
        cells, shown = len(state["cells"]), state["domCells"]
        assert shown == cells, f"only {shown} of the {cells} cells are in the page"
        errors = _errors(state)
        assert not errors, "\n\n".join(errors)
        missing = [c["i"] for c in state["cells"] if c["type"] == "code" and c["source"].strip() and c["exec"] is None]
        assert not missing, f"cells not executed by Run All: {missing}"
        problems, counts = _check_rendered(page, state, assignment)
        assert not problems, "\n".join(problems)
        phase("checks")
        moved = []
        for view in page.evaluate(RENDERED):
            if view.get("controls"):
                moved += [f"cell {view['i']}: {m}" for m in _move_controls(page, view["i"])]
        state = page.evaluate(STATE)
        errors = _errors(state)
        assert not errors, "after moving the widgets:\n" + "\n\n".join(errors)
        problems, _ = _check_rendered(page, state, assignment)
        assert not problems, "after moving the widgets:\n" + "\n".join(problems)
        if counts["controls"]:
            assert moved, f"{assignment}: controls rendered but none could be moved"
        phase("widgets")
        stderr = [f"cell {c['i']}: {''.join(o['text'])[-200:]}" for c in state["cells"] for o in c.get("outputs", [])
                  if o["type"] == "stream" and o.get("name") == "stderr" and "%|" not in "".join(o["text"])]
        _screenshot(page, assignment)
        phase("screenshot")
        SUMMARY[assignment] = {"wall_s": round(sum(p["wall_s"] for p in phases.values()), 1),
                               "cpu_s": round(sum(p["cpu_s"] for p in phases.values()), 1),
                               "kernel_cpu_s": round(kernel_cpu, 1), "phases": phases, **counts,
                               "moved": moved, "stderr": stderr}
        red = [f"cell {view['i']}: {bar!r}" for view in page.evaluate(RENDERED) for bar in view.get("redBars", [])]
        assert not red, f"{len(red)} progress bar(s) ended in the error style (red):\n" + "\n".join(red)
    except Exception:
        with contextlib.suppress(Exception):
            _screenshot(page, f"{assignment}-FAILED")
        raise
    finally:
        page.evaluate(CLOSE)
