# Everything runs from the project's own virtual environment; targets create it when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install deps test bench rules dashboards docs up down demo status clean vendor-js screenshots

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The system programs the stack and the tests use (prometheus, alertmanager, chromium, ...): installed with
# apt-get (root or passwordless sudo) or Homebrew, or else the one line to run is printed. DEPS_FLAGS=--strict
# makes anything still missing an error (CI).
deps:
	$(PYTHON) stack/deps.py $(DEPS_FLAGS)

test: deps $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run

rules: $(STAMP)
	$(BIN)/python -m devflow_monitor.alerting.build
	$(BIN)/python -m mixin.build

dashboards: $(STAMP)
	$(BIN)/python -m devflow_monitor.dashboards.build
	$(BIN)/python -m mixin.build

docs: $(STAMP)
	$(BIN)/python -m devflow_monitor.generate.metrics_doc

# The DevFlow `make up` watches, passed on as `stack up --devflow.*` flags when given on the command line, e.g. the
# public build run in DIR: make up DEVFLOW_WORKDIR=DIR DEVFLOW_LOG_FILES=DIR/devflow.out,DIR/devflow.err DEVFLOW_MODE=on_demand
# (`stack up` also reads the three from the environment and .env).
UP_FLAGS = $(if $(DEVFLOW_WORKDIR),--devflow.workdir '$(DEVFLOW_WORKDIR)') \
	$(if $(DEVFLOW_LOG_FILES),--devflow.log-files '$(DEVFLOW_LOG_FILES)') $(if $(DEVFLOW_MODE),--devflow.mode '$(DEVFLOW_MODE)')

up: deps $(STAMP)
	$(strip $(BIN)/devflow-monitor stack up $(UP_FLAGS))

down: $(STAMP)
	$(BIN)/devflow-monitor stack down

demo: deps $(STAMP)
	$(BIN)/devflow-monitor stack demo

status: $(STAMP)
	$(BIN)/devflow-monitor stack status

# The charting library of the built-in web dashboards, vendored from npm (no CDN at run time).
UPLOT_VERSION := 1.6.32
VENDOR := webdash/static/vendor
vendor-js:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent uplot@$(UPLOT_VERSION) && tar xzf uplot-$(UPLOT_VERSION).tgz \
	  && cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css $(CURDIR)/$(VENDOR)/ \
	  && cp package/LICENSE $(CURDIR)/$(VENDOR)/uPlot.LICENSE && rm -rf $$tmp

# docs/screenshots/*.png: the five built-in dashboards in headless Chromium against the demo chain.
screenshots: deps $(STAMP)
	DEVFLOW_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider \
	  tests/test_webdash_browser.py -k every_panel_shows_data

clean:
	rm -rf $(VENV) .pytest_cache
