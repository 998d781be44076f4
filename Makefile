# Convolution as Matrix Multiplication: build, test and run the book.
#   make book   set everything up (first time) and build the HTML book
#   make test   set everything up (first time) and run all tests (pytest + nbval); fetches CIFAR-10 if missing
# Everything lives in .venv; nothing is installed outside it.

PYTHON  ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
JOBS    ?= 2

# Where CIFAR-10 is looked for first (see data/README.md). Made absolute so that a
# notebook kernel running in chapters/ sees the same folder.
ifdef CONVLIB_DATA
export CONVLIB_DATA := $(abspath $(CONVLIB_DATA))
endif
# Always test and run the convlib of *this* checkout (also in a git worktree sharing .venv).
export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))
# Reproducible hashing (set iteration order) in every kernel.
export PYTHONHASHSEED := 0

.PHONY: help setup book test test-unit test-deep test-notebooks notebooks lab data fetch-data clean distclean \
	test-browser lint format

help:
	@sed -n '1,4p' Makefile

setup: $(STAMP)

# A file target: re-run only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (conv-as-matmul)" >/dev/null
	@touch $@

# Always a full build (a few seconds: the notebooks' stored outputs are rendered, not re-run); an incremental
# build can leave an older page's sidebar without a chapter added since.
BUILD_BOOK = $(BIN)/jupyter-book build . --all $(BOOKFLAGS)
book: $(STAMP)
	$(BUILD_BOOK)
	@echo "Open the book: file://$(CURDIR)/_build/html/index.html"

# CIFAR-10 first (found, or downloaded where the network allows), so that chapter 5 and the data tests have it.
test: fetch-data test-unit test-notebooks

# ruff (pinned in requirements.txt, configured in pyproject.toml): formatting and lint of src/, tests/, _ext/.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Unit and property tests, split over $(JOBS) processes.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist worksteal tests/ -q

# The property tests with hypothesis's "deep" profile (thousands of examples each; tests/conftest.py); not in CI.
test-deep: $(STAMP)
	HYPOTHESIS_PROFILE=deep $(BIN)/python -m pytest -n $(JOBS) --dist worksteal tests/ -q --hypothesis-show-statistics

# nbval re-runs every chapter and compares what each cell prints with the stored output (chapters/conftest.py: once
# a cell fails for want of CIFAR-10, the chapter's later cells are skipped with that message).
test-notebooks: $(STAMP) | fetch-data
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --nbval --nbval-current-env \
		--nbval-sanitize-with nbval_sanitize.cfg chapters/

# Re-execute chapters in place (fresh kernel, top to bottom), storing outputs; then drop saved ipywidgets
# state: in the static book a saved widget would be a control that looks live but cannot recompute (and its
# manager would come from a CDN). Explorer cells keep their text/plain note; the book removes their output.
#   make notebooks                      all chapters
#   make notebooks NB=chapters/01_x.ipynb   one
NB ?= $(wildcard chapters/*.ipynb)
STRIP_WIDGETS := import nbformat, sys; nb = nbformat.read(sys.argv[1], 4); nb.metadata.pop("widgets", None); \
	[o.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None) for c in nb.cells for o in c.get("outputs", [])]; \
	nbformat.write(nb, sys.argv[1])
notebooks: $(STAMP)
	cd chapters && for nb in $(notdir $(NB)); do \
		echo "executing $$nb"; $(abspath $(BIN))/jupyter execute --inplace --kernel_name=python3 $$nb || exit 1; \
		$(abspath $(BIN))/python -c '$(STRIP_WIDGETS)' $$nb || exit 1; done

lab: $(STAMP)
	$(BIN)/jupyter lab chapters/

# CIFAR-10: say where it is found, or download the original with torchvision into data/ (MD5-checked; needs
# network; see data/README.md). `make data` fails without it; `make test` goes on (only chapter 5 needs it).
data: $(STAMP)
	$(BIN)/python -m convlib.data --download

fetch-data: $(STAMP)
	@$(BIN)/python -m convlib.data --download || \
		echo "make test: going on without CIFAR-10 (the message above says how to get it); chapter 5 will fail"

# The built book in headless Chromium (Debian's /usr/bin/chromium), offline: every page of _toc.yml, with
# screenshots in _build/screenshots/ (see tests/book_in_browser.py). Built from scratch: an incremental build
# can leave a page's sidebar without a chapter added since that page was last written. (No sub-make: it would not
# inherit `make -o`.)
test-browser: $(STAMP)
	rm -rf _build/html _build/.doctrees
	$(BUILD_BOOK)
	$(BIN)/python -m pytest -q tests/book_in_browser.py

clean:
	rm -rf _build .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# Time every convolution method against F.conv2d (one thread; a few minutes) and store the run, numbers and
# figures, as a new folder chapters/bench/runs/<date>_<cpu>/ (chapter 6 reads every stored run). Run it on a
# quiet machine.
BENCH_OUT ?= chapters/bench/runs
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m convlib.bench --out $(BENCH_OUT)
