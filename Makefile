# The two commands a newcomer needs (README.md): `make site` and `make test`.
# Everything runs inside .venv, created here from requirements.txt on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: site site-solutions publish publish-solutions test venv browser lint bench bundle bundle-solutions clean

## site: build the book's student edition (answer cells replaced by pointers to the exercises) into
## _build/html; it executes every chapter, and the execution cache makes rebuilds fast
site: venv
	$(BIN)/jupyter-book build . --warningiserror --keep-going

## site-solutions: the solutions edition (every cell shown) into _build/solutions/html, from the same cache
site-solutions: venv
	$(BIN)/python book/_ext/editions.py build --edition solutions

## publish: the student edition to the gh-pages branch of repository.url in _config.yml (before the deadline)
publish: site
	$(BIN)/python book/_ext/editions.py publish --edition student

## publish-solutions: the solutions edition to the same branch (after the deadline)
publish-solutions: site-solutions
	$(BIN)/python book/_ext/editions.py publish --edition solutions

## test: the whole test suite; it builds the site and opens every page in headless Chromium
test: venv browser postgres
	$(BIN)/python -m pytest

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

## browser: Debian's chromium and chromedriver for the site's tests (nothing downloads its own browser)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; else \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium chromium-driver; fi

## postgres: Debian's PostgreSQL for the gradebook's tests; they start a throwaway cluster of their own
## (initdb and pg_ctl from /usr/lib/postgresql/*/bin) on a Unix socket, so the package's own cluster is unused
.PHONY: postgres
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; else \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq postgresql; fi

lint: venv
	$(BIN)/ruff check tricksref grader tests benchmarks book

## bench: the timing scripts; each prints median ratios against its baseline, measured in the same run
bench: venv
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

## bundle: what students get before the deadline, in dist/student: the student edition of the site, the
## exercises, tricksref without its from-scratch exercise code, the visible suites with their expected values
bundle: site
	$(BIN)/python -m grader bundle dist/student --edition student --force

## bundle-solutions: after the deadline, in dist/solutions: the full site and the from-scratch library
bundle-solutions: site-solutions
	$(BIN)/python -m grader bundle dist/solutions --edition solutions --force

clean:
	rm -rf _build
