# The course's commands. Everything runs from the pinned virtual environment in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
# nbgrader finds `alembic` on PATH, and the notebooks' kernels must use this environment.
export PATH := $(abspath $(BIN)):$(PATH)
WORKERS ?=

.PHONY: setup lab test test-fast test-browser demo release validate mutants grade lock clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "environment ready in $(VENV)"

release: setup
	$(BIN)/autograder release

# The student's view: the release, with the release's JupyterLab settings (nbgrader's assignment
# list and Validate, no instructor tools). --allow-root only where needed (containers run as root).
lab: release
	JUPYTER_CONFIG_PATH=$(abspath release/jupyter-config) $(BIN)/jupyter lab --notebook-dir=release $(if $(filter 0,$(shell id -u)),--allow-root)

# Every test but the browser's (its own target: it runs every notebook again, in Chromium).
test: setup
	COURSE_PROFILE=fast OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadscope --durations=15 tests notebooks --nbval-lax --ignore=tests/test_browser.py

# Chromium drives JupyterLab on a fresh release (.ci/run runs it after `make test`). Installs
# Chromium with apt-get when it is missing and this runs as root; skipped with the reason otherwise.
test-browser: setup
	COURSE_PROFILE=fast OMP_NUM_THREADS=1 $(BIN)/python -m pytest -v --durations=0 tests/test_browser.py

demo: setup
	$(BIN)/autograder demo

validate: setup
	$(BIN)/autograder validate

mutants: setup
	$(BIN)/autograder mutants

# make grade SUBMISSIONS=path/to/submitted OUT=grading [ASSIGNMENT=01_backprop]
grade: setup
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=folder-or-zip OUT=folder [ASSIGNMENT=name]"; exit 2)
	$(BIN)/autograder grade "$(SUBMISSIONS)" --out "$(or $(OUT),grading)" $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

# Re-pin after changing dependencies in pyproject.toml (torch stays at 2.13.0).
lock: setup
	$(BIN)/python -m pip install -q -e '.[test]'
	( sed -n 1,2p requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; \
	  $(BIN)/python -m pip freeze --all | grep '^setuptools==' ) > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf release demo grading gradebook.db .pytest_cache
